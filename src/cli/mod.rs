//! One module per subcommand; each exposes `run`.

pub mod bench;
pub mod bench_decode;
#[cfg(feature = "codegen")]
pub mod compile;
#[cfg(feature = "codegen")]
pub mod compile_model;
#[cfg(feature = "codegen")]
pub mod demo;
pub mod devices;
#[cfg(feature = "codegen")]
pub mod examples;
pub mod generate;
pub mod inputs;
pub mod inspect;
pub mod lang;
pub mod longnet;
pub mod model;
pub mod plot;
pub mod run;
pub mod targets;

/// Which kernel to run, and the problem to run it on: shared by `interpret`, `run` and `bench`.
#[derive(clap::Args)]
pub struct ProblemArgs {
    /// The kernel.
    #[arg(long)]
    pub kernel: String,
    /// Values of the shape symbols, e.g. --shape M=100,N=64,K=40.
    #[arg(long, value_delimiter = ',')]
    pub shape: Vec<String>,
    /// Values of scalar parameters, e.g. --scalar scale=0.125 (default 1).
    #[arg(long, value_delimiter = ',')]
    pub scalar: Vec<String>,
    /// Seed of the random inputs (default: fresh each run; `bench` uses 1).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The interval an input tensor's random values are drawn from instead of [-1, 1), e.g.
    /// --range slope=0.001:1 (decay rates are positive in every model).
    #[arg(long, value_delimiter = ',')]
    pub range: Vec<String>,
}

/// `NAME=LO:HI` arguments (`--range`): the interval of each named input.
pub fn ranges(items: &[String]) -> Result<std::collections::HashMap<String, (f64, f64)>, String> {
    key_values(items, "--range")?
        .into_iter()
        .map(|(k, v)| {
            let parsed = v.split_once(':').and_then(|(lo, hi)| {
                Some((
                    lo.trim().parse::<f64>().ok()?,
                    hi.trim().parse::<f64>().ok()?,
                ))
            });
            match parsed {
                Some((lo, hi)) if lo.is_finite() && hi.is_finite() && lo < hi => Ok((k, (lo, hi))),
                _ => Err(format!("--range {k}={v}: not LO:HI with finite LO < HI")),
            }
        })
        .collect()
}

/// Fails unless every `--range` names one of `inputs` (the kernel's input tensors).
pub fn ranges_name_inputs<'a>(
    ranges: &std::collections::HashMap<String, (f64, f64)>,
    inputs: impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    let inputs: Vec<&str> = inputs.collect();
    match ranges.keys().find(|n| !inputs.contains(&n.as_str())) {
        Some(name) => Err(format!(
            "--range {name}: the kernel has no input tensor `{name}`"
        )),
        None => Ok(()),
    }
}

/// The error every subcommand returns; `main` prints it with its chain of causes.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;

/// `NAME=VALUE` arguments (`-D`, `--shape`, `--scalar`) split into pairs; `what` names the flag in
/// errors.
pub fn key_values(items: &[String], what: &str) -> Result<Vec<(String, String)>, String> {
    items
        .iter()
        .map(|d| {
            d.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("{what} `{d}` is not NAME=VALUE"))
        })
        .collect()
}

/// `NAME=NUMBER` arguments.
pub fn numeric_key_values(
    items: &[String],
    what: &str,
) -> Result<std::collections::HashMap<String, f64>, String> {
    key_values(items, what)?
        .into_iter()
        .map(|(k, v)| match v.parse::<f64>() {
            Ok(x) => Ok((k, x)),
            Err(_) => Err(format!("{what} {k}={v}: not a number")),
        })
        .collect()
}
