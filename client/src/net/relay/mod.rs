//! Watching through Media over QUIC relays instead of a StreamSocket server: find a relay
//! that carries the broadcast and read its `hang` catalog (`connect`), read the subscribed
//! tracks into the same pipeline a server's streams feed (`tracks`), and drive the same
//! control core, answering for the server it cannot talk to (`driver`): a rendition switch is
//! a subscription to another track, which starts at its newest group's keyframe; the clock
//! comes from the catalog; a lost relay is followed by the next one.

pub mod connect;
pub mod driver;
pub mod tracks;

pub use connect::{RelayOptions, RelaySession};
