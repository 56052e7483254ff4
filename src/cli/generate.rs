//! `tessel generate MODEL_DIR --package tnl.tpkg --tokens 1,2,3 --max-new-tokens N`: greedy or
//! sampled (temperature, top-k, top-p, seed; chosen on the device) generation, streaming token ids, on the GPU (a package from `compile-model`) or, for small
//! configurations, in the Tile IR interpreter (`--interpret`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use tessel_models::backend::{Backend, InterpBackend};
use tessel_models::backend_gpu::GpuBackend;
use tessel_models::parallel::Ranks;
use tessel_models::transnormer::config::ModelConfig;
use tessel_models::transnormer::tensor_parallel;
use tessel_models::transnormer::weights::Weights;
use tessel_models::transnormer::{Choice, Logits, Session, Tiles, Transnormer};
use tessel_runtime::collective::Group;
use tessel_runtime::format::Package;
use tessel_runtime::{Device, LoadedPackage};

#[derive(Args)]
pub struct GenerateArgs {
    /// A model directory: config.json and safetensors weights.
    pub model_dir: PathBuf,
    /// The package `tessel compile-model` built for this configuration (runs on the GPU).
    #[arg(
        long,
        conflicts_with = "interpret",
        required_unless_present = "interpret"
    )]
    pub package: Option<PathBuf>,
    /// Run every kernel in the Tile IR interpreter instead (small configurations only).
    #[arg(long)]
    pub interpret: bool,
    /// The prompt as text, through the directory's tokenizer.json (which also turns the output
    /// into text when there is one sequence).
    #[arg(long, conflicts_with = "tokens", required_unless_present_any = ["tokens", "random_prompt"])]
    pub prompt: Option<String>,
    /// The prompt as token ids, e.g. --tokens 1,2,3.
    #[arg(long, value_delimiter = ',')]
    pub tokens: Vec<u32>,
    /// A prompt of this many random token ids (benchmarks: context length), seeded by --seed.
    #[arg(long, conflicts_with_all = ["tokens", "prompt"])]
    pub random_prompt: Option<usize>,
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    /// Sequences decoded together (each starts from the prompt).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Sampling temperature (0 or absent: greedy, unless --top-k/--top-p ask for sampling at 1).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Sample among the K most likely tokens only.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample among the smallest set of most likely tokens whose probability reaches P.
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Seed of the draws (and of --random-prompt).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Split the model over N GPUs (0..N, NCCL all-reduces; the package from `compile-model
    /// --tensor-parallel N`), or with --interpret over N interpreter ranks with the all-reduces
    /// simulated in process. N must divide the heads and glu_dim.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub tensor_parallel: usize,
}

/// Where a generation runs: one backend, or a tensor-parallel group of ranks.
fn machine(
    args: &GenerateArgs,
    model: &Transnormer,
    weights: &Weights,
) -> Result<(Transnormer, Box<dyn Backend>), Box<dyn std::error::Error>> {
    let n = args.tensor_parallel;
    if n == 1 {
        let mut be: Box<dyn Backend> = match &args.package {
            Some(path) => {
                let dev = Device::open(0)?;
                let pkg = LoadedPackage::load(&dev, Package::read(path)?)?;
                Box::new(GpuBackend::new(dev, pkg))
            }
            None => Box::new(InterpBackend::new()),
        };
        model.load(be.as_mut(), weights)?;
        return Ok((model.clone(), be));
    }
    // Refuse a degree that does not divide the model before any device is opened.
    tensor_parallel::check(&model.cfg, n)?;
    match &args.package {
        Some(path) => {
            let mut ranks = Ranks::gpu(Group::open(n)?, &Package::read(path)?)?;
            // All-reduce time per step: events around each collective, read after the steps.
            ranks.comm.timing = true;
            let local = tensor_parallel::load(model, &mut ranks, weights)?;
            Ok((local, Box::new(ranks)))
        }
        None => {
            let mut ranks = Ranks::interpreted(n)?;
            let local = tensor_parallel::load(model, &mut ranks, weights)?;
            Ok((local, Box::new(ranks)))
        }
    }
}

/// The directory's tokenizer.json when the prompt is text (required then), or when the output
/// can be shown as text.
pub(super) fn text_tokenizer(args: &GenerateArgs) -> Result<Option<tokenizers::Tokenizer>, String> {
    let path = args.model_dir.join("tokenizer.json");
    if !path.exists() {
        return match args.prompt {
            Some(_) => Err(format!(
                "--prompt needs {}; pass token ids with --tokens instead",
                path.display()
            )),
            None => Ok(None),
        };
    }
    tokenizers::Tokenizer::from_file(&path)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Greedy, or on-device sampling with the flags' values.
pub(super) fn choice(args: &GenerateArgs) -> Result<Choice, String> {
    let sampling = args.top_k.is_some() || args.top_p.is_some();
    let temperature = match args.temperature {
        Some(t) if !(t >= 0.0 && t.is_finite()) => {
            return Err(format!("--temperature {t}: must be finite and ≥ 0"))
        }
        Some(t) if t == 0.0 && sampling => {
            return Err("--top-k/--top-p sample: they need a temperature above 0".into())
        }
        Some(0.0) => return Ok(Choice::Greedy),
        Some(t) => t,
        None if sampling => 1.0,
        None => return Ok(Choice::Greedy),
    };
    let top_p = args.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(format!("--top-p {top_p}: must be in (0, 1]"));
    }
    let top_k = args.top_k.unwrap_or(0);
    if top_k > i32::MAX as usize {
        return Err(format!("--top-k {top_k}: too large"));
    }
    Ok(Choice::Sample {
        temperature,
        top_k,
        top_p,
        seed: args.seed.unwrap_or(0) as u32,
    })
}

pub(super) fn mib(b: usize) -> f64 {
    b as f64 / (1 << 20) as f64
}

pub fn run(args: GenerateArgs) -> super::CliResult {
    if tessel_models::longnet::config::is_longnet(&args.model_dir.to_string_lossy()) {
        if args.tensor_parallel != 1 {
            return Err(
                "--tensor-parallel splits TransNormerLLM; LongNet is not split by heads".into(),
            );
        }
        return super::longnet::generate(args);
    }
    let choice = choice(&args)?;
    let tokenizer = text_tokenizer(&args)?;
    let cfg = ModelConfig::read(&args.model_dir.join("config.json"))?;
    let weights = Weights::open(&args.model_dir, &cfg)?;
    let tiles = match &args.package {
        Some(_) => Tiles::gpu(),
        None => Tiles::interpreter(),
    };
    let mut model = Transnormer::new(cfg, tiles);
    model.choice = choice;
    let t0 = Instant::now();
    let (model, mut be) = machine(&args, &model, &weights)?;
    eprintln!(
        "loaded {} ({:.0} MiB stored) in {:.2} s{}",
        args.model_dir.display(),
        mib(weights.stored_bytes()),
        t0.elapsed().as_secs_f64(),
        match args.tensor_parallel {
            1 => String::new(),
            n => format!(", sharded over {n} ranks"),
        }
    );
    let tokens = match args.random_prompt {
        Some(n) => {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed.unwrap_or(0));
            (0..n)
                .map(|_| rng.random_range(0..model.cfg.vocab as u32))
                .collect()
        }
        None => match (&args.prompt, &tokenizer) {
            (Some(text), Some(tok)) => tok
                .encode(text.as_str(), true)
                .map_err(|e| format!("tokenizing the prompt: {e}"))?
                .get_ids()
                .to_vec(),
            _ => args.tokens.clone(),
        },
    };
    let prompts = vec![tokens.clone(); args.batch];
    let mut s = Session::new(&model, be.as_mut(), args.batch)?;
    let t0 = Instant::now();
    let plan = s.prefill(&prompts, Logits::Last)?;
    let mut next = s.next_tokens()?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let prefill_ar = s.backend().take_collective_ms()?;
    eprintln!(
        "prefill: {} tokens × {} in {:.1} ms ({:.0} tokens/s); intermediates peak {:.2} MiB \
         (unshared {:.2} MiB)",
        tokens.len(),
        args.batch,
        prefill_s * 1e3,
        (tokens.len() * args.batch) as f64 / prefill_s,
        mib(plan.arena_bytes),
        mib(plan.unshared_bytes)
    );
    if let Some(ms) = prefill_ar {
        eprintln!("prefill all-reduce: {ms:.3} ms");
    }
    let mut stream = Stream::new(tokenizer.as_ref());
    let mut emit = |toks: &[u32]| stream.emit(toks);
    if args.max_new_tokens > 0 {
        emit(&next);
    }
    // The first step builds (on the GPU: captures) the decode graph; the steps after it are the
    // steady state that tokens/s reports.
    if args.max_new_tokens > 1 {
        next = s.step()?;
        emit(&next);
    }
    s.backend().take_collective_ms()?;
    let t0 = Instant::now();
    for _ in 2..args.max_new_tokens {
        next = s.step()?;
        emit(&next);
    }
    if tokenizer.is_some() && args.batch == 1 {
        println!();
    }
    let steps = args.max_new_tokens.saturating_sub(2);
    let dt = t0.elapsed().as_secs_f64();
    let decode_ar = s.backend().take_collective_ms()?;
    if steps > 0 {
        let plan = s.decode_plan().expect("a step ran");
        eprintln!(
            "decode: {steps} steps × {} in {:.1} ms: {:.1} tokens/s ({:.0} µs/step); \
             intermediates peak {:.3} MiB (unshared {:.3} MiB)",
            args.batch,
            dt * 1e3,
            (steps * args.batch) as f64 / dt,
            dt / steps as f64 * 1e6,
            mib(plan.arena_bytes),
            mib(plan.unshared_bytes)
        );
        if let Some(ms) = decode_ar {
            eprintln!("decode all-reduce: {:.1} µs/step", ms * 1e3 / steps as f64);
        }
    }
    let (persistent, arena) = s.backend().memory();
    eprintln!(
        "memory{}: persistent {:.1} MiB (weights, states, ids), arena {:.2} MiB",
        if args.tensor_parallel > 1 {
            " per rank"
        } else {
            ""
        },
        mib(persistent),
        mib(arena)
    );
    Ok(())
}

/// Prints generated tokens as they come: with a tokenizer and one sequence, text (the decoding
/// of everything generated so far, of which the new suffix is printed: a token's text can
/// depend on its neighbours); otherwise one line of ids per step.
pub(super) struct Stream<'t> {
    tokenizer: Option<&'t tokenizers::Tokenizer>,
    generated: Vec<u32>,
    shown: String,
}

impl<'t> Stream<'t> {
    pub(super) fn new(tokenizer: Option<&'t tokenizers::Tokenizer>) -> Self {
        Self {
            tokenizer,
            generated: Vec::new(),
            shown: String::new(),
        }
    }

    pub(super) fn emit(&mut self, toks: &[u32]) {
        let mut out = std::io::stdout().lock();
        match (self.tokenizer, toks) {
            (Some(tok), [t]) => {
                self.generated.push(*t);
                let text = tok.decode(&self.generated, true).unwrap_or_default();
                let new = text.strip_prefix(self.shown.as_str()).unwrap_or(&text);
                let _ = write!(out, "{new}");
                self.shown = text;
            }
            _ => {
                let ids: Vec<String> = toks.iter().map(u32::to_string).collect();
                let _ = writeln!(out, "{}", ids.join(" "));
            }
        }
        let _ = out.flush();
    }
}
