//! The browser's way in: the web viewer's page over HTTPS (TCP, the same port number as the
//! QUIC endpoint by default), the short-lived certificate browsers accept by its hash, and
//! the checks on a WebTransport session's CONNECT request before it becomes a
//! [`crate::session::Connection`] like any native viewer's.

pub(crate) mod assets;
pub(crate) mod certificate;
pub(crate) mod connect;
pub(crate) mod framing;
pub(crate) mod https;

pub use certificate::{renewal_delay, WebCertificate, RENEW_BEFORE};
pub use connect::{OriginPolicy, WEBTRANSPORT_PATH};
pub use https::{PageServer, MAX_HTTP_CONNECTIONS};
