//! One module per subcommand; each exposes `run`.

pub mod bench;
#[cfg(feature = "codegen")]
pub mod compile;
#[cfg(feature = "codegen")]
pub mod demo;
pub mod devices;
pub mod lang;
pub mod plot;
pub mod run;
pub mod targets;

/// The error every subcommand returns; `main` prints it with its chain of causes.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;
