//! `tessel model init`: a TransNormerLLM or LongNet directory in the released layout with random
//! weights (the configuration picks the model: `longnet::config::is_longnet`).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use tessel_models::transnormer::config::ModelConfig;
use tessel_models::transnormer::init::{write_random, InitOptions};
use tessel_models::transnormer::weights::Stored;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Write config.json and seeded random weights (safetensors, released tensor names).
    Init(InitArgs),
    /// Print the prefill and decode graphs' calls and memory plans for a configuration.
    Plan(PlanArgs),
}

#[derive(Args)]
pub struct PlanArgs {
    /// A model directory, a config.json, or a released shape (385m, 1b, ...).
    pub config: String,
    /// Sequences per batch.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Prompt length of the prefill.
    #[arg(long, default_value_t = 2048)]
    pub tokens: usize,
    /// List every call of the decode step.
    #[arg(long)]
    pub calls: bool,
    /// Print the sharding plan over N ranks, and one rank's graphs.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub tensor_parallel: usize,
}

#[derive(Args)]
pub struct InitArgs {
    /// A config.json, or a released shape: 385m, 1b, 7b, tnl2-3b, tnl3-15b; LongNet:
    /// longnet-tiny, longnet-small, longnet-base, or a DecoderConfig JSON.
    #[arg(long)]
    pub config: String,
    /// The directory to write.
    #[arg(long, value_name = "DIR")]
    pub random_weights: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Storage type: bf16, f16 or f32.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// Number of safetensors shards (more than 1 writes model.safetensors.index.json).
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// Standard deviation of the weights (the released init: 0.02).
    #[arg(long, default_value_t = 0.02)]
    pub std: f64,
}

pub fn run(cmd: ModelCommand) -> super::CliResult {
    match cmd {
        ModelCommand::Init(args) => init(args),
        ModelCommand::Plan(args) => plan(args),
    }
}

fn config(what: &str) -> Result<ModelConfig, Box<dyn std::error::Error>> {
    if let Some(c) = ModelConfig::released(what) {
        return Ok(c);
    }
    let p = Path::new(what);
    Ok(ModelConfig::read(&if p.is_dir() {
        p.join("config.json")
    } else {
        p.to_path_buf()
    })?)
}

fn plan(args: PlanArgs) -> super::CliResult {
    if tessel_models::longnet::config::is_longnet(&args.config) {
        if args.tensor_parallel != 1 {
            return Err(
                "--tensor-parallel splits TransNormerLLM; LongNet is not split by heads".into(),
            );
        }
        return super::longnet::plan(&args.config, args.batch, args.tokens, args.calls);
    }
    use tessel_models::transnormer::{Logits, Tiles, Transnormer};
    let full = config(&args.config)?;
    let ranks = args.tensor_parallel;
    let plan = tessel_models::transnormer::tensor_parallel::ShardPlan::new(&full, ranks)?;
    if ranks > 1 {
        print!("{}", plan.render());
    }
    let model = Transnormer::new(full, Tiles::gpu()).rank_model(ranks)?;
    let cfg = model.cfg.clone();
    let weights: usize = tessel_models::transnormer::weights::expected(&cfg)
        .iter()
        .map(|(_, s)| s.iter().product::<usize>() * 2)
        .sum();
    let state: usize = (0..cfg.layers)
        .map(|l| args.batch * cfg.heads * cfg.key_dim(l) * cfg.head_dim * 4)
        .sum();
    let layers = cfg.layers;
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    // A rank's weights: its shards plus the replicated embedding and LM head.
    let weights = if ranks > 1 {
        plan.bytes_per_rank().0
    } else {
        weights
    };
    println!(
        "weights (bf16){}: {:.1} MiB; decode state: {:.2} MiB",
        if ranks > 1 { " per rank" } else { "" },
        mib(weights),
        mib(state)
    );
    let (b, n) = (args.batch, args.tokens);
    for (what, g) in [
        (
            format!("prefill {b}×{n}"),
            model.prefill_graph(b, n, Logits::Last),
        ),
        (format!("decode {b}"), model.decode_graph(b)),
    ] {
        let p = g.plan();
        let collectives = g.len()
            - g.graph
                .node_weights()
                .filter(|c| c.kernel().is_some())
                .count();
        let launches = g.len() - collectives;
        println!(
            "{what}: {launches} kernel launches ({:.2} per layer), {collectives} all-reduces, {} \
             intermediates; arena {:.2} MiB (peak of live intermediates), {:.2} MiB without reuse",
            launches as f64 / layers as f64,
            g.transients.len(),
            mib(p.arena_bytes),
            mib(p.unshared_bytes)
        );
        if args.calls && what.starts_with("decode") {
            for node in &p.order {
                let c = &g.graph[*node];
                println!("  {:<32} {}", c.label, c.describe());
            }
        }
    }
    Ok(())
}

fn init(args: InitArgs) -> super::CliResult {
    if tessel_models::longnet::config::is_longnet(&args.config) {
        let dtype = stored(&args.dtype)?;
        if args.shards == 0 {
            return Err("--shards must be at least 1".into());
        }
        let (dir, c) = (&args.random_weights, &args.config);
        return super::longnet::init(c, dir, args.seed, args.std, dtype, args.shards);
    }
    let cfg = match ModelConfig::released(&args.config) {
        Some(c) => c,
        None => ModelConfig::read(Path::new(&args.config))?,
    };
    let dtype = stored(&args.dtype)?;
    if args.shards == 0 {
        return Err("--shards must be at least 1".into());
    }
    let opts = InitOptions {
        seed: args.seed,
        std: args.std,
        head_std: None,
        dtype,
        shards: args.shards,
    };
    write_random(&cfg, &args.random_weights, &opts)?;
    eprintln!(
        "wrote {} ({} layers, D = {}, H = {}, F = {}, vocab {}; {} shard(s) of {})",
        args.random_weights.display(),
        cfg.layers,
        cfg.dim,
        cfg.heads,
        cfg.glu,
        cfg.vocab,
        args.shards,
        args.dtype
    );
    Ok(())
}

fn stored(dtype: &str) -> Result<Stored, String> {
    match dtype {
        "bf16" => Ok(Stored::Bf16),
        "f16" => Ok(Stored::F16),
        "f32" => Ok(Stored::F32),
        d => Err(format!("--dtype {d}: expected bf16, f16 or f32")),
    }
}
