//! LongNet (Ding et al. 2023; torchscale's `LongNetDecoder`): the configuration as a JSON of its
//! `DecoderConfig` fields, weights under torchscale's state-dict names, random-weight model
//! directories, and the model as graphs of tessel kernel calls (prefill with causal dilated
//! attention, decode over a KV cache).

pub mod config;
pub mod graphs;
pub mod init;
pub mod model;
pub mod session;
pub mod weights;

pub use config::LongNetConfig;
pub use model::{LongNet, LongNetTiles};
pub use session::LongNetSession;
