//! TLS for torsion, with [rustls]: servers, clients and STARTTLS over any transport.
//!
//! TLS is a layer between a transport and a protocol, not a kind of socket: a
//! [`TlsLayer`] is the protocol of a TCP connection (or a Unix socket, or anything that is a
//! [`Transport`](torsion_reactor::Transport)), owns a rustls connection and the
//! application's protocol, and gives that protocol a transport that behaves as a plain
//! one does, in plaintext: writes never block or drop, `pause_writing`/`resume_writing`
//! follow the write buffer's marks, half-close sends `close_notify`, `connection_lost`
//! comes once with a reason that tells a TLS failure ([`ConnectionLost::Tls`]: a rejected
//! certificate, a handshake timeout, a protocol error) from a network one.
//!
//! The application's protocol is told `connection_made` once the handshake is done (as in
//! asyncio), so it can read what the handshake decided, [`TlsInfo`]: version, cipher
//! suite, ALPN protocol, SNI name, the peer's certificates. If the handshake fails it is
//! told nothing.
//!
//! ```no_run
//! use torsion_reactor::{factory_fn, Protocol, Reactor, Transport};
//! use torsion_tls::{ServerOptions, TlsInfo};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn connection_made(&mut self, t: &Transport) {
//!         let tls = TlsInfo::of(t).expect("a TLS transport");
//!         println!("{} from {} ({})", tls.version_name(), t.peer_addr(), tls.cipher_suite_name());
//!     }
//!     fn data_received(&mut self, t: &Transport, data: &[u8]) {
//!         t.write(data);
//!     }
//! }
//!
//! let acceptor = ServerOptions::from_pem_files("fullchain.pem", "privkey.pem")?
//!     .alpn(["http/1.1"])
//!     .build()?; // missing files, a key for another certificate, an expired one: an error here
//! let reactor = Reactor::current();
//! reactor.listen_tcp("0.0.0.0:8443".parse()?, acceptor.wrap(factory_fn(|_| Echo)))?;
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Endpoint strings (`ssl:443:privateKey=key.pem:certKey=cert.pem`,
//! `tls:example.org:443`) are in `torsion-endpoints`, built on this crate.
//!
//! # Pieces
//!
//! | item | what it is |
//! |---|---|
//! | [`Identity`] | a certificate chain and its key, from PEM files or memory, checked when loaded |
//! | [`TrustRoots`] | trusted authorities: the system's, or a CA file or directory |
//! | [`ServerOptions`] → [`TlsAcceptor`] | identities chosen by SNI, ALPN, client certificates ([`ClientAuth`]), session tickets, handshake timeout; [`reload`](TlsAcceptor::reload) replaces certificates without dropping connections |
//! | [`ClientOptions`] → [`TlsConnector`] | trust roots, host name check, SNI, ALPN, a client certificate; no verification only when asked for by name |
//! | [`TlsServerFactory`], [`TlsClientFactory`] | a factory's protocols behind TLS layers: listen or connect with them |
//! | [`TlsLayer`] | the layer itself, for any transport; [`TlsAcceptor::start_tls`] and [`TlsConnector::start_tls`] switch a live connection (STARTTLS) |
//! | [`TlsInfo`] | what the handshake decided, from `TlsInfo::of(transport)` |
//! | [`ConfigError`] | why a configuration could not be built, naming the file |
//!
//! # Crypto provider
//!
//! rustls with the `ring` provider: it builds with a C compiler alone (aws-lc-rs, rustls's
//! default, also needs cmake, and more time), and is what the benchmarks compare with.
//! TLS 1.2 and 1.3; ECDHE key exchange (X25519, P-256, P-384); AES-GCM and
//! ChaCha20-Poly1305.
//!
//! # Where things are
//!
//! `layer/` (the layer: records in, plaintext out, flow control, closing), `server.rs`,
//! `client.rs`, `factory.rs`, `identity.rs`, `roots.rs`, `files.rs` (PEM and certificate
//! checks), `info.rs`, `error.rs`.
//!
//! [rustls]: https://docs.rs/rustls
//! [`ConnectionLost::Tls`]: torsion_reactor::ConnectionLost::Tls
#![deny(missing_docs)]

mod client;
mod error;
mod factory;
mod files;
mod identity;
mod info;
mod layer;
mod roots;
mod server;

use std::sync::{Arc, OnceLock};

pub use client::{ClientOptions, TlsConnector};
pub use error::{ConfigError, ConfigErrorKind};
pub use factory::{TlsClientFactory, TlsServerFactory};
pub use identity::Identity;
pub use info::TlsInfo;
pub use layer::TlsLayer;
pub use roots::TrustRoots;
pub use server::{
    ClientAuth, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_RELOAD_CHECK, ServerOptions, TlsAcceptor,
};

/// The rustls this crate is built on (its types appear in [`TlsInfo`] and the options).
pub use rustls;

/// The crypto provider every configuration here uses: rustls's `ring` provider.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}
