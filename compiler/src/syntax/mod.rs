//! Source text → AST. Parsing never panics: malformed input becomes a [`Diagnostic`] whose span
//! points at where the parser stopped, with what it expected there.

pub mod ast;
mod errors;
mod parser;

pub use parser::parse;
