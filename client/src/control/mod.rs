//! Decisions, without I/O: what the viewer asks of the server and when (`viewer_control`),
//! the person's and scripts' commands, automatic quality, the clocks, the latency budget and
//! the reconnection back-off.

pub mod auto_quality;
pub mod backoff;
pub mod clock;
pub mod clock_sync;
pub mod commands;
pub mod latency_budget;
pub mod viewer_control;
