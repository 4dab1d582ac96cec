//! The client side: [`ClientOptions`] (trust roots, a client certificate, ALPN, versions,
//! timeouts) and [`TlsConnector`], which makes client TLS layers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};
use torsion_reactor::{ClientFactory, Deferred, Error, Protocol, Transport};

use crate::error::ConfigError;
use crate::factory::{TlsClientFactory, boxed};
use crate::identity::Identity;
use crate::layer::TlsLayer;
use crate::roots::TrustRoots;
use crate::server::DEFAULT_HANDSHAKE_TIMEOUT;

/// How a TLS client connects: which authorities it trusts (the system's by default), the
/// certificate it presents if the server asks, ALPN, versions, the handshake timeout.
/// Verification of the server's certificate and name is always on unless turned off with
/// [`danger_accept_invalid_certificates`](ClientOptions::danger_accept_invalid_certificates).
///
/// ```no_run
/// use torsion_reactor::{ClientFactory, Protocol, Reactor, Transport, factory_fn};
/// use torsion_tls::{ClientOptions, TlsInfo};
///
/// struct Get;
/// impl Protocol for Get {
///     fn connection_made(&mut self, t: &Transport) {
///         let alpn = TlsInfo::of(t).and_then(|i| i.alpn_protocol().map(<[u8]>::to_vec));
///         println!("ALPN: {alpn:?}");
///         t.write(b"GET / HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n");
///     }
///     fn data_received(&mut self, _: &Transport, d: &[u8]) {
///         print!("{}", String::from_utf8_lossy(d));
///     }
/// }
///
/// let connector = ClientOptions::new().alpn(["http/1.1"]).build()?;
/// let reactor = Reactor::current();
/// let factory = connector.wrap("example.org", factory_fn(|_| Get))?;
/// let ready = factory.next_handshake();
/// reactor.connect_tcp("93.184.215.14:443".parse()?, factory);
/// reactor.run_until_complete(ready)??;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ClientOptions {
    roots: Option<TrustRoots>,
    identity: Option<Identity>,
    alpn: Vec<Vec<u8>>,
    versions: Vec<&'static SupportedProtocolVersion>,
    handshake_timeout: Duration,
    verify: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions::new()
    }
}

impl ClientOptions {
    /// The defaults: the system's trust roots, no client certificate, no ALPN, TLS 1.2 and
    /// 1.3, a 10 s handshake timeout, verification on.
    pub fn new() -> ClientOptions {
        ClientOptions {
            roots: None,
            identity: None,
            alpn: Vec::new(),
            versions: rustls::DEFAULT_VERSIONS.to_vec(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            verify: true,
        }
    }

    /// Trusts these authorities instead of the system's.
    pub fn trust_roots(mut self, roots: TrustRoots) -> ClientOptions {
        self.roots = Some(roots);
        self
    }

    /// Presents this certificate when a server asks for one.
    pub fn identity(mut self, identity: Identity) -> ClientOptions {
        self.identity = Some(identity);
        self
    }

    /// The ALPN protocols offered, preferred first (`["h2", "http/1.1"]`).
    pub fn alpn<I, P>(mut self, protocols: I) -> ClientOptions
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// The protocol versions allowed (default both).
    pub fn versions(mut self, versions: &[&'static SupportedProtocolVersion]) -> ClientOptions {
        self.versions = versions.to_vec();
        self
    }

    /// How long a handshake may take (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> ClientOptions {
        self.handshake_timeout = timeout;
        self
    }

    /// Accepts any server certificate, for any name: the connection is encrypted but not
    /// authenticated, so anyone on the path can read and change it. For tests against
    /// throwaway servers only; building such a connector logs a warning.
    pub fn danger_accept_invalid_certificates(mut self) -> ClientOptions {
        self.verify = false;
        self
    }

    /// Checks the options and makes the connector (reading the system's trust roots, once
    /// per process, if no others were given).
    pub fn build(self) -> Result<TlsConnector, ConfigError> {
        if self.alpn.iter().any(Vec::is_empty) {
            return Err(ConfigError::option("an ALPN protocol name cannot be empty"));
        }
        let provider = crate::provider();
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&self.versions)
            .map_err(|e| ConfigError::option(format!("cannot use these TLS versions: {e}")))?;
        let builder = if self.verify {
            let roots = match &self.roots {
                Some(roots) => roots.clone(),
                None => TrustRoots::system()?,
            };
            builder.with_root_certificates(Arc::clone(&roots.store))
        } else {
            log::warn!(
                "TLS client built with certificate verification OFF: its connections are \
                 encrypted but not authenticated (danger_accept_invalid_certificates)"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
        };
        let mut config = match &self.identity {
            Some(id) => {
                builder.with_client_cert_resolver(Arc::new(OneCertificate(Arc::clone(&id.key))))
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        Ok(TlsConnector {
            shared: Arc::new(ConnectorShared {
                config: Arc::new(config),
                handshake_timeout: self.handshake_timeout,
                verify: self.verify,
            }),
        })
    }
}

/// Presents one certificate whenever a server asks.
#[derive(Debug)]
struct OneCertificate(Arc<CertifiedKey>);

impl ResolvesClientCert for OneCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Accepts any certificate (still checking the handshake's signatures, so the peer holds
/// the key of the certificate it sent).
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

struct ConnectorShared {
    config: Arc<ClientConfig>,
    handshake_timeout: Duration,
    verify: bool,
}

/// Makes the client side of TLS connections: wrap a client factory with
/// [`wrap`](TlsConnector::wrap) and connect with it (over TCP, a Unix socket, anything),
/// wrap one protocol with [`wrap_protocol`](TlsConnector::wrap_protocol), or switch a live
/// connection to TLS with [`start_tls`](TlsConnector::start_tls).
///
/// Cheap to clone and `Send + Sync`. Its connections share a session cache, so a second
/// connection to the same server resumes the first one's session.
#[derive(Clone)]
pub struct TlsConnector {
    shared: Arc<ConnectorShared>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("verify", &self.shared.verify)
            .field("alpn", &self.shared.config.alpn_protocols)
            .finish()
    }
}

/// `name` as rustls wants it: a DNS name or an IP address.
pub(crate) fn server_name(name: &str) -> Result<ServerName<'static>, ConfigError> {
    let trimmed = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(trimmed.to_owned()).map_err(|e| {
        ConfigError::option(format!(
            "{name:?} is not a host name or IP address to check a certificate against: {e}"
        ))
    })
}

impl TlsConnector {
    /// The rustls configuration of its connections.
    pub fn config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.shared.config)
    }

    /// The handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        self.shared.handshake_timeout
    }

    /// A client factory that builds `factory`'s protocols behind a client TLS layer each,
    /// checking the server's certificate against `server_name` (sent with SNI when it is a
    /// name). `factory` is told `client_connection_made` once the handshake is done,
    /// `client_connection_failed` if the connect or the handshake fails.
    pub fn wrap<C: ClientFactory>(
        &self,
        server_name: &str,
        factory: C,
    ) -> Result<TlsClientFactory<C>, ConfigError> {
        Ok(TlsClientFactory::new(
            self.clone(),
            self::server_name(server_name)?,
            factory,
        ))
    }

    /// `protocol` behind a client TLS layer for `server_name`, to be a transport's
    /// protocol.
    pub fn wrap_protocol<P: Protocol>(
        &self,
        server_name: &str,
        protocol: P,
    ) -> Result<TlsLayer, Error> {
        self.layer(self::server_name(server_name)?, boxed(protocol))
    }

    pub(crate) fn layer(
        &self,
        name: ServerName<'static>,
        protocol: Box<dyn Protocol>,
    ) -> Result<TlsLayer, Error> {
        let tls =
            rustls::ClientConnection::new(Arc::clone(&self.shared.config), name).map_err(|e| {
                Error::new(
                    torsion_reactor::ErrorKind::InvalidInput,
                    format!("cannot start a TLS client connection: {e}"),
                )
            })?;
        Ok(TlsLayer::new(
            rustls::Connection::Client(tls),
            protocol,
            self.shared.handshake_timeout,
        ))
    }

    /// Switches a live connection to TLS as its client (STARTTLS), checking the server's
    /// certificate against `server_name`: the hello goes out after whatever plaintext was
    /// written before, and `protocol` is told `connection_made` with the TLS transport once
    /// the handshake is done. `received` is what the old protocol already read past the
    /// point of the switch (handled as TLS; usually empty). The Deferred fires with the TLS
    /// transport, or fails with the handshake's error. After the switch, write only to the
    /// TLS transport.
    pub fn start_tls<P: Protocol>(
        &self,
        transport: &Transport,
        server_name: &str,
        protocol: P,
        received: &[u8],
    ) -> Result<Deferred<Transport>, Error> {
        let layer = self.layer(self::server_name(server_name)?, boxed(protocol))?;
        crate::layer::start_tls(transport, layer, received)
    }
}
