//! `tessel model init`: a TransNormerLLM directory in the released layout with random weights.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use tessel_models::transnormer::config::ModelConfig;
use tessel_models::transnormer::init::{write_random, InitOptions};
use tessel_models::transnormer::weights::Stored;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Write config.json and seeded random weights (safetensors, released tensor names).
    Init(InitArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// A config.json, or a released shape: 385m, 1b, 7b, tnl2-3b, tnl3-15b.
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
    }
}

fn init(args: InitArgs) -> super::CliResult {
    let cfg = match ModelConfig::released(&args.config) {
        Some(c) => c,
        None => ModelConfig::read(Path::new(&args.config))?,
    };
    let dtype = match args.dtype.as_str() {
        "bf16" => Stored::Bf16,
        "f16" => Stored::F16,
        "f32" => Stored::F32,
        d => return Err(format!("--dtype {d}: expected bf16, f16 or f32").into()),
    };
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
