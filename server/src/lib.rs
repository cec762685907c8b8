//! StreamSocket server: captures (or synthesises) audio and video, encodes AV1 and Opus once
//! per rendition, and fans the result out to every viewer over QUIC.
//!
//! The modules follow the pipeline: [`capture`] → [`encode`] (own threads, bounded channels)
//! → [`fanout`] (by reference) → [`session`] (one per viewer: a sans-I/O core under a QUIC
//! driver). [`access`] decides who may watch, [`ui`] is the broadcaster's window, and
//! `server` wires them together ([`Server`]).

pub mod access;
pub mod capture;
pub mod encode;
pub mod fanout;
pub mod metrics;
pub mod publish;
mod server;
pub mod session;
pub mod ui;
pub mod web;

pub use server::{EncoderTuning, Inputs, Server, ServerOptions};
