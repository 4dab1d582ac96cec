//! [`TlsInfo`]: what a handshake decided, as the TLS transport reports it.

use std::rc::Rc;

use rustls::pki_types::CertificateDer;
use rustls::{CipherSuite, HandshakeKind, ProtocolVersion};
use torsion_reactor::Transport;

/// What the handshake of a TLS connection decided: the protocol version, the cipher suite,
/// the ALPN protocol, the server name (SNI), the peer's certificate chain, and whether the
/// session was resumed.
///
/// A TLS transport answers [`Transport::extra`] for it, so a protocol reads it with
/// `TlsInfo::of(transport)` (or `transport.extra::<TlsInfo>()`) from `connection_made` on
/// (a TLS protocol is told `connection_made` once the handshake is done):
///
/// ```
/// use torsion_reactor::{Protocol, Transport};
/// use torsion_tls::TlsInfo;
///
/// struct Hello;
/// impl Protocol for Hello {
///     fn connection_made(&mut self, t: &Transport) {
///         if let Some(tls) = TlsInfo::of(t) {
///             let alpn = tls.alpn_protocol().map(String::from_utf8_lossy);
///             println!("{} {} alpn={alpn:?}", tls.version_name(), tls.cipher_suite_name());
///         }
///     }
///     fn data_received(&mut self, _: &Transport, _: &[u8]) {}
/// }
/// ```
#[derive(Clone, Debug)]
pub struct TlsInfo {
    pub(crate) version: ProtocolVersion,
    pub(crate) cipher_suite: CipherSuite,
    pub(crate) alpn: Option<Vec<u8>>,
    pub(crate) server_name: Option<String>,
    pub(crate) peer_certificates: Vec<CertificateDer<'static>>,
    pub(crate) resumed: bool,
    pub(crate) is_server: bool,
}

impl TlsInfo {
    /// The TLS details of `transport`'s connection, if it is a TLS transport (or one
    /// wrapping it) whose handshake is done.
    pub fn of(transport: &Transport) -> Option<Rc<TlsInfo>> {
        transport.extra::<TlsInfo>()
    }

    pub(crate) fn from_connection(tls: &rustls::Connection) -> TlsInfo {
        let (server_name, is_server) = match tls {
            rustls::Connection::Server(s) => (s.server_name().map(str::to_owned), true),
            rustls::Connection::Client(_) => (None, false),
        };
        TlsInfo {
            version: tls
                .protocol_version()
                .unwrap_or(ProtocolVersion::Unknown(0)),
            cipher_suite: tls
                .negotiated_cipher_suite()
                .map_or(CipherSuite::Unknown(0), |s| s.suite()),
            alpn: tls.alpn_protocol().map(<[u8]>::to_vec),
            server_name,
            peer_certificates: tls
                .peer_certificates()
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            resumed: matches!(tls.handshake_kind(), Some(HandshakeKind::Resumed)),
            is_server,
        }
    }

    /// The protocol version (`ProtocolVersion::TLSv1_3`, `TLSv1_2`).
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The protocol version as people write it: `TLSv1.3`, `TLSv1.2` (OpenSSL's names).
    pub fn version_name(&self) -> &'static str {
        match self.version {
            ProtocolVersion::TLSv1_3 => "TLSv1.3",
            ProtocolVersion::TLSv1_2 => "TLSv1.2",
            ProtocolVersion::TLSv1_1 => "TLSv1.1",
            ProtocolVersion::TLSv1_0 => "TLSv1",
            _ => "unknown",
        }
    }

    /// The cipher suite.
    pub fn cipher_suite(&self) -> CipherSuite {
        self.cipher_suite
    }

    /// The cipher suite's IANA name, such as `TLS13_AES_256_GCM_SHA384` (rustls spells the
    /// TLS 1.3 ones without the `TLS_` prefix's underscore).
    pub fn cipher_suite_name(&self) -> &'static str {
        self.cipher_suite.as_str().unwrap_or("unknown")
    }

    /// The protocol agreed by ALPN (`b"h2"`, `b"http/1.1"`), if both sides offered one in
    /// common.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }

    /// On a server, the name the client asked for with SNI (`None` if it sent none: an IP
    /// address, or an old client). On a client, `None` (the name it connected to is the
    /// one it gave).
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The peer's certificate chain, its own certificate first: the server's (on a
    /// client), or the client's (on a server that asked for one and got it). Empty if the
    /// peer sent none.
    pub fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        &self.peer_certificates
    }

    /// Whether the handshake resumed an earlier session (a ticket) rather than doing a
    /// full one.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Whether this end is the server.
    pub fn is_server(&self) -> bool {
        self.is_server
    }
}
