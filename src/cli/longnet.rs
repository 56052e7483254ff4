//! The LongNet side of `tessel model init/plan`, `compile-model` and `generate`: each command
//! looks at the configuration it is given (`longnet::config::is_longnet`) and comes here for a
//! LongNet one, so both models share the commands and their flags.

use std::path::Path;
use std::time::Instant;

use tessel_models::backend::{Backend, InterpBackend};
use tessel_models::backend_gpu::GpuBackend;
use tessel_models::checkpoint::{Checkpoint, Stored};
use tessel_models::graph::KernelRef;
use tessel_models::longnet::config::{resolve, LongNetConfig};
use tessel_models::longnet::weights::expected;
use tessel_models::longnet::{init, LongNet, LongNetSession, LongNetTiles};
use tessel_models::transnormer::Logits;
use tessel_runtime::format::Package;
use tessel_runtime::{Device, LoadedPackage};

use super::generate::{choice, mib, text_tokenizer, GenerateArgs, Stream};

/// `model init`: config.json and random weights under torchscale's names.
pub fn init(
    what: &str,
    dir: &Path,
    seed: u64,
    std: f64,
    dtype: Stored,
    shards: usize,
) -> super::CliResult {
    let cfg = resolve(what)?;
    init::write_random(&cfg, dir, seed, std, None, dtype, shards)?;
    eprintln!(
        "wrote {} (LongNet: {} layers, D = {}, H = {}, F = {}, vocab {}, patterns {:?}; {shards} shard(s))",
        dir.display(),
        cfg.layers,
        cfg.dim,
        cfg.heads,
        cfg.ffn,
        cfg.vocab,
        cfg.patterns.iter().map(|p| (p.w, p.r)).collect::<Vec<_>>(),
    );
    Ok(())
}

/// `model plan`: the prefill and decode graphs' sizes and memory plans.
pub fn plan(what: &str, b: usize, n: usize, calls: bool) -> super::CliResult {
    let cfg = resolve(what)?;
    let weights: usize = expected(&cfg)
        .required
        .iter()
        .map(|(_, s)| s.iter().product::<usize>() * 2)
        .sum();
    let cache = 2 * cfg.layers * b * cfg.heads * n * cfg.head_dim * 2;
    println!(
        "weights (bf16): {:.1} MiB; KV cache for {n} tokens × {b}: {:.2} MiB",
        mib(weights),
        mib(cache)
    );
    let model = LongNet::new(cfg, LongNetTiles::gpu());
    for (what, g) in [
        (
            format!("prefill {b}×{n}"),
            model.prefill_graph(b, n, n, Logits::Last),
        ),
        (format!("decode {b}"), model.decode_graph(b, n)),
    ] {
        let p = g.plan();
        println!(
            "{what}: {} calls, {} intermediates; arena {:.2} MiB (peak of live intermediates), \
             {:.2} MiB without reuse",
            g.len(),
            g.transients.len(),
            mib(p.arena_bytes),
            mib(p.unshared_bytes)
        );
        if calls && what.starts_with("decode") {
            for node in &p.order {
                let c = &g.graph[*node];
                println!("  {:<40} {}", c.label, c.describe());
            }
        }
    }
    Ok(())
}

/// Every kernel variant a LongNet configuration's graphs call.
pub fn kernels(what: &str) -> Result<Vec<KernelRef>, Box<dyn std::error::Error>> {
    Ok(LongNet::new(resolve(what)?, LongNetTiles::gpu()).kernels())
}

fn prompt_tokens(
    args: &GenerateArgs,
    cfg: &LongNetConfig,
    tok: Option<&tokenizers::Tokenizer>,
) -> Result<Vec<u32>, String> {
    Ok(match args.random_prompt {
        Some(n) => {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed.unwrap_or(0));
            (0..n)
                .map(|_| rng.random_range(0..cfg.vocab as u32))
                .collect()
        }
        None => match (&args.prompt, tok) {
            (Some(text), Some(tok)) => tok
                .encode(text.as_str(), true)
                .map_err(|e| format!("tokenizing the prompt: {e}"))?
                .get_ids()
                .to_vec(),
            _ => args.tokens.clone(),
        },
    })
}

/// `generate` for a LongNet directory: prefill, then decode over the KV cache (sized for the
/// prompt and --max-new-tokens).
pub fn generate(args: GenerateArgs) -> super::CliResult {
    let choice = choice(&args)?;
    let tokenizer = text_tokenizer(&args)?;
    let cfg = LongNetConfig::read(&args.model_dir.join("config.json"))?;
    let ck = Checkpoint::open(&args.model_dir, &expected(&cfg))?;
    let (tiles, mut be): (LongNetTiles, Box<dyn Backend>) = match &args.package {
        Some(path) => {
            let dev = Device::open(0)?;
            let pkg = LoadedPackage::load(&dev, Package::read(path)?)?;
            (LongNetTiles::gpu(), Box::new(GpuBackend::new(dev, pkg)))
        }
        None => (LongNetTiles::interpreter(), Box::new(InterpBackend::new())),
    };
    let tokens = prompt_tokens(&args, &cfg, tokenizer.as_ref())?;
    let mut model = LongNet::new(cfg, tiles);
    model.choice = choice;
    let t0 = Instant::now();
    model.load(be.as_mut(), &ck)?;
    eprintln!(
        "loaded {} (LongNet, {:.0} MiB stored) in {:.2} s",
        args.model_dir.display(),
        mib(ck.stored_bytes()),
        t0.elapsed().as_secs_f64()
    );
    let capacity = tokens.len() + args.max_new_tokens;
    let mut s = LongNetSession::new(&model, be.as_mut(), args.batch, capacity)?;
    let t0 = Instant::now();
    let plan = s.prefill(&vec![tokens.clone(); args.batch], Logits::Last)?;
    let mut next = s.next_tokens()?;
    let prefill_s = t0.elapsed().as_secs_f64();
    eprintln!(
        "prefill: {} tokens × {} in {:.1} ms ({:.0} tokens/s); intermediates peak {:.2} MiB",
        tokens.len(),
        args.batch,
        prefill_s * 1e3,
        (tokens.len() * args.batch) as f64 / prefill_s,
        mib(plan.arena_bytes),
    );
    let mut stream = Stream::new(tokenizer.as_ref());
    if args.max_new_tokens > 0 {
        stream.emit(&next);
    }
    if args.max_new_tokens > 1 {
        next = s.step()?;
        stream.emit(&next);
    }
    let t0 = Instant::now();
    for _ in 2..args.max_new_tokens {
        next = s.step()?;
        stream.emit(&next);
    }
    if tokenizer.is_some() && args.batch == 1 {
        println!();
    }
    let steps = args.max_new_tokens.saturating_sub(2);
    if steps > 0 {
        let dt = t0.elapsed().as_secs_f64();
        eprintln!(
            "decode: {steps} steps × {} in {:.1} ms: {:.1} tokens/s ({:.0} µs/step)",
            args.batch,
            dt * 1e3,
            (steps * args.batch) as f64 / dt,
            dt / steps as f64 * 1e6,
        );
    }
    let (persistent, arena) = s.backend().memory();
    eprintln!(
        "memory: persistent {:.1} MiB (weights, KV caches, ids), arena {:.2} MiB",
        mib(persistent),
        mib(arena)
    );
    Ok(())
}
