//! `streamsocket-netem`: a UDP relay that impairs the traffic between viewers and a server on
//! loopback, for tests and benchmarks. The impairment model is sans I/O ([`model`]); the
//! relay ([`relay`]) is a thin tokio shell around it.

pub mod model;
pub mod relay;
pub mod schedule;
