//! `tessel bench-decode`: Lightning Attention generation, one token per step for B sequences ×
//! H heads, through `tessel_runtime::lightning::lightning_attention_decode` (operand checks and
//! all, as a serving loop would call it). One generation runs from an empty state up to the
//! largest context; a window of steps ending at each requested context is timed with CUDA events,
//! so "tokens/s at context L" is measured at position L of a real recurrence, not on a state of
//! the right size. The kernel reads and writes the (B, H, D, E) state and nothing that grows with
//! L: the point is that the column stays flat.

use std::path::PathBuf;

use clap::Args;
use tessel_models::transnormer::decay::{layer_slopes, Schedule};
use tessel_runtime::format::{DType, Package};
use tessel_runtime::lightning::lightning_attention_decode;
use tessel_runtime::{Device, DeviceTensor, LoadedPackage};

use super::run::random_values;

#[derive(Args)]
pub struct DecodeBenchArgs {
    /// A `lightning_attention` package (variants over D and E).
    pub package: PathBuf,
    /// Sequences decoded together.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 64])]
    pub batch: Vec<usize>,
    #[arg(long, default_value_t = 16)]
    pub heads: usize,
    #[arg(long, default_value_t = 128)]
    pub d: usize,
    #[arg(long, default_value_t = 128)]
    pub e: usize,
    /// Contexts (tokens already generated) at which a window is timed; the run generates up to
    /// the largest.
    #[arg(long, value_delimiter = ',', default_values_t = [1024usize, 4096, 16384, 65536, 262144, 1048576])]
    pub context: Vec<usize>,
    /// Steps per timed window (ending at the context).
    #[arg(long, default_value_t = 512)]
    pub window: usize,
    /// One JSON object per (batch, context) instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DecodeBenchArgs) -> super::CliResult {
    // Arguments first: a bad request is refused before any device work.
    let mut contexts = args.context.clone();
    contexts.sort_unstable();
    contexts.dedup();
    let window = args.window.max(1);
    if contexts.first().is_some_and(|&c| c < window) {
        return Err(format!("every context must be at least the window ({window} steps)").into());
    }
    let package = Package::read(&args.package)?;
    let dev = Device::open(0)?;
    let pkg = LoadedPackage::load(&dev, package)?;
    let (h, d, e) = (args.heads, args.d, args.e);
    // TransNormerLLM's first-layer decays: the state stays bounded however long the run.
    let slopes = layer_slopes(Schedule::Released, h, 0, 24);
    let slopes = DeviceTensor::from_f64(&dev, DType::F32, &[h], &slopes)?;
    if !args.json {
        println!(
            "{:>6} {:>9} {:>10} {:>14}",
            "batch", "context", "us/step", "tokens/s"
        );
    }
    for &b in &args.batch {
        // A few token sets in rotation: the step's inputs differ from step to step as in
        // generation, and uploading fresh ones would time the host.
        let tokens: Vec<[DeviceTensor; 3]> = (0..8u64)
            .map(|i| -> Result<_, Box<dyn std::error::Error>> {
                let t = |w: usize, seed: u64, scale: f64| {
                    let x: Vec<f64> = random_values(b * h * w, seed)
                        .iter()
                        .map(|v| v * scale)
                        .collect();
                    DeviceTensor::from_f64(&dev, DType::Bf16, &[b, h, w], &x)
                };
                Ok([
                    t(d, 3 * i, 1.0)?,
                    t(d, 3 * i + 1, 1.0 / (d as f64).sqrt())?,
                    t(e, 3 * i + 2, 1.0)?,
                ])
            })
            .collect::<Result<_, _>>()?;
        let mut state =
            DeviceTensor::from_f64(&dev, DType::F32, &[b, h, d, e], &vec![0.0; b * h * d * e])?;
        let mut step = 0usize;
        let advance = |state: &mut DeviceTensor, n: usize, step: &mut usize| {
            for _ in 0..n {
                let [q, k, v] = &tokens[*step % tokens.len()];
                lightning_attention_decode(&dev, &pkg, q, k, v, &slopes, state)?;
                *step += 1;
            }
            Ok::<(), tessel_runtime::RuntimeError>(())
        };
        for &c in &contexts {
            advance(&mut state, (c - window).saturating_sub(step), &mut step)?;
            dev.synchronize()?;
            let ms = dev.time_ms(|| advance(&mut state, window, &mut step))?;
            let us = 1e3 * ms as f64 / window as f64;
            let tps = (b * window) as f64 / (ms as f64 * 1e-3);
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"batch": b, "heads": h, "d": d, "e": e, "context": c,
                        "window": window, "us_per_step": us, "tokens_per_s": tps})
                );
            } else {
                println!("{b:>6} {c:>9} {us:>10.2} {tps:>14.0}");
            }
        }
        // Finite after the whole run: a sanity check on the recurrence, not a timing.
        let s = state.to_f64(&dev)?;
        if !s.iter().all(|x| x.is_finite()) {
            return Err(format!("batch {b}: the state is not finite after {step} steps").into());
        }
    }
    Ok(())
}
