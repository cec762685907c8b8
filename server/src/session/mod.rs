//! One viewer's session: the control stream (hello, welcome, pings, requests), one
//! unidirectional stream per video frame with a delivery deadline, and audio datagrams.
//! Sessions are independent: a slow or hostile viewer only ever loses its own frames or its
//! own connection.
//!
//! Split as quinn splits quinn-proto from quinn: [`core::Session`] decides everything about
//! a viewer without I/O (with [`VideoForwarder`] and [`AudioForwarder`] for
//! its media), and `quic` ([`serve`]) drives it over a QUIC connection: a native viewer's, or
//! a browser's WebTransport session on the same endpoint.

pub(crate) mod audio;
pub(crate) mod core;
pub(crate) mod quic;
pub(crate) mod video;

pub use self::core::{Action, Ending, Offer, Session};
pub use audio::{AudioAction, AudioCounters, AudioForwarder, Verdict};
pub use quic::{close, serve, Connection, ViewerKind};
pub use video::{
    KeyframeAsker, VideoAction, VideoCounters, VideoEvent, VideoForwarder, MIN_SWITCH_INTERVAL,
    YOUNG_GOP,
};

/// How a viewer gets its first decodable frame when it joins or switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JoinStrategy {
    /// Send the current group of pictures from its keyframe at once (the picture appears
    /// immediately and catches up to live as fast as the viewer decodes); ask for a keyframe
    /// only when there is no group yet.
    Gop,
    /// Ask the encoder for a new keyframe (coalesced, rate-limited) and wait for it.
    Keyframe,
    /// The group when it is young (at most [`YOUNG_GOP`] frames, so catching up is
    /// quick), otherwise a new keyframe.
    #[default]
    Hybrid,
}
