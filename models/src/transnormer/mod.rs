//! TransNormerLLM. For now: its decay schedule, which kernels, tests and the model share.

pub mod decay;
