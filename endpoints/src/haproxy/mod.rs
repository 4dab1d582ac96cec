//! The PROXY protocol (HAProxy's, versions 1 and 2): how a load balancer that relays TCP
//! connections tells the server behind it who the client is.
//!
//! - [`header`](ProxyHeader): the header itself, [`HeaderReader`] (an incremental parser:
//!   complete, needs more, or an error saying what is wrong) and
//!   [`ProxyHeader::encode`]. Pure code, no I/O.
//! - [`ProxyServerFactory`]: reads the header on each accepted connection before the
//!   wrapped factory builds the protocol, which then sees the client's address as
//!   `peer_addr()` and the header (TLVs) as `transport.extra::<ProxyHeader>()`. The
//!   `haproxy:` server endpoint ([`HaproxyServer`](crate::HaproxyServer)) is this around
//!   any stream server, under TLS for `haproxy:ssl:`.
//! - [`ProxyClientFactory`]: sends a header first on each connection it makes (to put a
//!   torsion proxy in front of a server that reads the header).
//!
//! It lives in the endpoints crate because the `haproxy:` endpoint is built on it, and
//! the endpoints crate is what applications and the TLS endpoints already depend on; the
//! reactor only provides what any such layer needs (a transport whose peer address and
//! extra information a layer can set: `Transport::set_peer_addr`,
//! `Transport::attach_extra`).
//!
//! See the guide's chapter `docs/proxy-protocol.md`.

mod client;
mod handoff;
mod header;
mod server;

pub use client::{ProxyClientFactory, SendHeader};
pub use header::{
    Command, DEFAULT_MAX_HEADER_LEN, HeaderError, HeaderErrorKind, HeaderReader, ProxiedAddresses,
    ProxiedTransport, ProxyHeader, Tlv, V1_MAX_LEN, V2_SIGNATURE, Version, parse_header, tlv,
};
pub use server::{DEFAULT_HEADER_TIMEOUT, ProxyHeaderLayer, ProxyServerFactory};
