//! Connecting again after an outage: when and with which rendition is the control core's
//! decision ([`crate::control::viewer_control`]); this carries out one attempt and keeps the
//! connection in use where the viewer's end can find it.

use std::sync::{Arc, Mutex};

use streamsocket_proto::control::WishedRendition;

use crate::control::viewer_control::Event;
use crate::net::connect::{connect, worth_retrying, ConnectOptions, Session};

/// The connection in use now (it changes when the viewer reconnects).
#[derive(Clone, Default)]
pub struct CurrentConnection(Arc<Mutex<Option<(quinn::Endpoint, quinn::Connection)>>>);

impl CurrentConnection {
    pub(crate) fn set(&self, s: &Session) {
        self.set_parts(&s.endpoint, &s.conn);
    }

    pub(crate) fn set_parts(&self, endpoint: &quinn::Endpoint, conn: &quinn::Connection) {
        *self.0.lock().expect("not poisoned") = Some((endpoint.clone(), conn.clone()));
    }

    pub fn get(&self) -> Option<(quinn::Endpoint, quinn::Connection)> {
        self.0.lock().expect("not poisoned").clone()
    }
}

/// One attempt, with a hello asking for `rendition`; a failure comes back as the event the
/// control core takes.
pub async fn attempt(opts: &ConnectOptions, rendition: WishedRendition) -> Result<Session, Event> {
    let opts = ConnectOptions {
        rendition,
        ..opts.clone()
    };
    connect(&opts).await.map_err(|e| Event::ConnectFailed {
        retry: worth_retrying(&e),
        error: e.to_string(),
    })
}
