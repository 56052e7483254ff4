//! TransNormerLLM (ALGORITHMS.md §2): configuration and weights in the released Hugging Face
//! layout, the decay schedule, and random-weight model directories.

pub mod config;
pub mod decay;
pub mod init;
pub mod weights;

#[cfg(test)]
mod weights_tests;
