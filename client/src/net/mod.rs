//! The QUIC side of the viewer: connecting and verifying the server (`connect`, `tls`), the
//! control stream's driver (`control_stream`), receiving frame streams and audio datagrams
//! (`receive`), and reconnecting (`reconnect`); or watching through Media over QUIC relays
//! instead (`relay`). Decisions are the control core's.

pub mod connect;
pub mod control_stream;
pub mod receive;
pub mod reconnect;
pub mod relay;
pub mod tls;
