//! StreamSocket's link to Media over QUIC relay networks (moq-relay 0.17, moq-lite): a
//! broadcast's `hang` catalog ([`catalog`]), how frames and audio packets become groups
//! ([`media`]), and connecting to a relay on our own quinn endpoint ([`link`]).

pub mod catalog;
pub mod link;
pub mod media;

pub use hang;
pub use moq_net;
