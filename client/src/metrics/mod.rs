//! What the viewer measures, and the JSON written by `--stats-json`.
//!
//! Each stage owns its counters (`net::receive`, `video::decoder`, `video::presenter`,
//! `audio`, `record`, `net::control_stream`) and is the only one to write them; [`Metrics`]
//! holds a handle to each and assembles a [`Stats`] snapshot when one is asked for (the
//! overlay, automatic quality's once-a-second look, `--stats-json` at the end).

mod snapshot;
mod stats;

pub use snapshot::Metrics;
pub use stats::*;
