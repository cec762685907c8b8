//! What the viewer measures, and the JSON written by `--stats-json`.

mod stats;

pub use stats::*;
