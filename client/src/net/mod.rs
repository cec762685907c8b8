//! The QUIC side of the viewer: connecting and verifying the server (`connect`, `tls`), the
//! control stream's driver (`control_stream`), receiving frame streams and audio datagrams
//! (`receive`), and reconnecting (`reconnect`). Decisions are the control core's.

pub mod connect;
pub mod control_stream;
pub mod receive;
pub mod reconnect;
pub mod tls;
