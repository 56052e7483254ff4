//! TransNormerLLM (ALGORITHMS.md §2): configuration and weights in the released Hugging Face
//! layout, the decay schedule, random-weight model directories, and the model as graphs of
//! tessel kernel calls (prefill and decode) run by a [`crate::backend::Backend`].

pub mod config;
pub mod decay;
pub mod init;
pub mod model;
pub mod model_decode;
pub mod model_graphs;
pub mod session;
pub mod tensor_parallel;
pub mod weights;

#[cfg(test)]
mod tensor_parallel_tests;
#[cfg(test)]
mod weights_tests;

pub use model::{Choice, Tiles, Tp, Transnormer};
pub use model_graphs::Logits;
pub use session::Session;
