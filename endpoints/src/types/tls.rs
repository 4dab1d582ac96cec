//! `ssl` and `tls` servers ([`TlsServer`]) and `tls` clients ([`TlsClient`]): their specs,
//! parsers, and I/O (a TCP listener or connection with `torsion-tls`'s layer on it).
//!
//! The certificate, key and CA files are read and checked when a description is parsed
//! (so `endpoint_check` reports a missing file, a key for another certificate or an expired
//! certificate), and again when the server listens or the client first connects.

use std::any::Any;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use torsion_reactor::{
    Address, BoxedClientFactory, BoxedFactory, ClientFactory, Deferred, Error, Factory,
    ListeningPort, Reactor, SharedFactory, Transport,
};
use torsion_tls::{
    ClientAuth, ClientOptions, ConfigError, ConfigErrorKind, Identity, ServerOptions, TlsConnector,
    TrustRoots,
};

use crate::args::{Args, Bound, ParamSpec, Value};
use crate::error::{EndpointError, ErrorKind};
use crate::grammar::quote;
use crate::happy_eyeballs::target_name;
use crate::spec::{
    ClientSpec, ClientType, DEFAULT_BACKLOG, MAX_BACKLOG, ParamValue, ServerSpec, ServerType,
};
use crate::types::tcp::{TcpClient, TcpServer, client_params, client_target};
use crate::values::format_scoped;

/// A TLS server: TCP plus a certificate (`ssl`, Twisted's name, or its synonym `tls`).
///
/// ```no_run
/// use torsion_endpoints::{parse_server, TlsServer};
///
/// let spec = parse_server(
///     "ssl:443:privateKey=/etc/ssl/key.pem:certKey=/etc/ssl/cert.pem:alpn=h2,http/1.1",
/// )?;
/// let tls = spec.downcast_ref::<TlsServer>().unwrap();
/// assert_eq!(tls.tcp.port, 443);
/// assert_eq!(tls.alpn, ["h2", "http/1.1"]);
/// # Ok::<(), torsion_endpoints::EndpointError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsServer {
    /// Where to listen (`port`, `interface` (IPv4 or IPv6), `backlog`, `reuseport`).
    pub tcp: TcpServer,
    /// `privateKey`: the private key's PEM file (it may hold the certificate too).
    pub private_key: PathBuf,
    /// `certKey`: the certificate chain's PEM file; `None`: the `privateKey` file holds it.
    pub cert_key: Option<PathBuf>,
    /// `extraCertChain`: more chain certificates, sent after those of `certKey`.
    pub extra_cert_chain: Option<PathBuf>,
    /// `caCerts`: authorities that sign client certificates; given, clients are asked for
    /// one.
    pub ca_certs: Option<PathBuf>,
    /// `requireClientCert`: refuse clients without a certificate `caCerts` trusts.
    pub require_client_cert: bool,
    /// `alpn`: the ALPN protocols spoken, preferred first.
    pub alpn: Vec<String>,
    /// `sslmethod`: `TLSv1_2_METHOD` limits the server to TLS 1.2; `None` (or
    /// `SSLv23_METHOD`, `TLS_METHOD`) allows 1.2 and 1.3.
    pub tls12_only: bool,
    /// `dhParameters`: accepted for Twisted's descriptions, and not used (rustls uses
    /// elliptic-curve key exchange only).
    pub dh_parameters: Option<PathBuf>,
    type_name: &'static str,
}

impl TlsServer {
    /// An `ssl` server on `port` presenting the certificate and key in `private_key` (one
    /// file holding both), with the defaults.
    pub fn new(port: u16, private_key: impl Into<PathBuf>) -> TlsServer {
        TlsServer {
            tcp: TcpServer::new(port),
            private_key: private_key.into(),
            cert_key: None,
            extra_cert_chain: None,
            ca_certs: None,
            require_client_cert: false,
            alpn: Vec::new(),
            tls12_only: false,
            dh_parameters: None,
            type_name: "ssl",
        }
    }

    /// The certificate file (`certKey`, or `privateKey` when it holds both).
    pub fn certificate_file(&self) -> &Path {
        self.cert_key.as_deref().unwrap_or(&self.private_key)
    }

    /// Reads and checks the files, giving the TLS options the server listens with.
    pub fn options(&self) -> Result<ServerOptions, ConfigError> {
        let identity = Identity::from_pem_files_with_chain(
            self.certificate_file(),
            &self.private_key,
            self.extra_cert_chain.as_ref(),
        )?;
        let mut options = ServerOptions::new(identity).alpn(&self.alpn);
        if self.tls12_only {
            options = options.versions(&[&torsion_tls::rustls::version::TLS12]);
        }
        if let Some(ca) = &self.ca_certs {
            let roots = TrustRoots::from_pem_file(ca)?;
            options = options.client_auth(if self.require_client_cert {
                ClientAuth::Required(roots)
            } else {
                ClientAuth::Optional(roots)
            });
        }
        Ok(options)
    }

    /// Which parameter names `path`.
    fn param_of(&self, path: Option<&Path>) -> Option<&'static str> {
        let path = path?;
        if self.cert_key.as_deref() == Some(path) {
            Some("certKey")
        } else if self.private_key == path {
            Some("privateKey")
        } else if self.extra_cert_chain.as_deref() == Some(path) {
            Some("extraCertChain")
        } else if self.ca_certs.as_deref() == Some(path) {
            Some("caCerts")
        } else {
            None
        }
    }

    /// [`ServerSpec::listen`] with the factory's type kept (see [`crate::types::listen`]).
    pub(crate) fn listen_with<F: Factory>(
        &self,
        reactor: &Reactor,
        factory: F,
    ) -> Result<ListeningPort, Error> {
        let acceptor = self.options()?.build()?;
        self.tcp.listen_with(reactor, acceptor.wrap(factory))
    }
}

fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn opt_path(p: Option<&PathBuf>) -> ParamValue {
    p.map_or(ParamValue::Null, |p| ParamValue::Str(path_text(p)))
}

impl ServerSpec for TlsServer {
    fn type_name(&self) -> &str {
        self.type_name
    }

    fn params(&self) -> Vec<(String, ParamValue)> {
        vec![
            ("port".to_owned(), ParamValue::Int(self.tcp.port.into())),
            (
                "privateKey".to_owned(),
                ParamValue::Str(path_text(&self.private_key)),
            ),
            ("certKey".to_owned(), opt_path(self.cert_key.as_ref())),
            (
                "sslmethod".to_owned(),
                if self.tls12_only {
                    ParamValue::Str("TLSv1_2_METHOD".to_owned())
                } else {
                    ParamValue::Null
                },
            ),
            (
                "interface".to_owned(),
                ParamValue::Str(format_scoped(
                    &self.tcp.interface,
                    self.tcp.scope.as_deref(),
                )),
            ),
            (
                "backlog".to_owned(),
                ParamValue::Int(self.tcp.backlog.into()),
            ),
            (
                "extraCertChain".to_owned(),
                opt_path(self.extra_cert_chain.as_ref()),
            ),
            (
                "dhParameters".to_owned(),
                opt_path(self.dh_parameters.as_ref()),
            ),
            ("caCerts".to_owned(), opt_path(self.ca_certs.as_ref())),
            (
                "requireClientCert".to_owned(),
                ParamValue::Bool(self.require_client_cert),
            ),
            ("alpn".to_owned(), alpn_value(&self.alpn)),
            ("reuseport".to_owned(), ParamValue::Bool(self.tcp.reuseport)),
        ]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn listen(&self, reactor: &Reactor, factory: BoxedFactory) -> Result<ListeningPort, Error> {
        self.listen_with(reactor, factory)
    }
}

fn alpn_value(alpn: &[String]) -> ParamValue {
    if alpn.is_empty() {
        ParamValue::Null
    } else {
        ParamValue::Str(alpn.join(","))
    }
}

impl fmt::Display for TlsServer {
    /// The canonical description, every given parameter by keyword; it parses back to
    /// `self`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = |p: &Path| quote(&path_text(p));
        write!(
            f,
            "{}:port={}:privateKey={}",
            self.type_name,
            self.tcp.port,
            q(&self.private_key)
        )?;
        if let Some(c) = &self.cert_key {
            write!(f, ":certKey={}", q(c))?;
        }
        if self.tls12_only {
            f.write_str(":sslmethod=TLSv1_2_METHOD")?;
        }
        write!(
            f,
            ":interface={}:backlog={}",
            quote(&format_scoped(
                &self.tcp.interface,
                self.tcp.scope.as_deref()
            )),
            self.tcp.backlog
        )?;
        if let Some(c) = &self.extra_cert_chain {
            write!(f, ":extraCertChain={}", q(c))?;
        }
        if let Some(c) = &self.dh_parameters {
            write!(f, ":dhParameters={}", q(c))?;
        }
        if let Some(c) = &self.ca_certs {
            write!(f, ":caCerts={}", q(c))?;
        }
        if self.require_client_cert {
            f.write_str(":requireClientCert=1")?;
        }
        if !self.alpn.is_empty() {
            write!(f, ":alpn={}", quote(&self.alpn.join(",")))?;
        }
        if self.tcp.reuseport {
            f.write_str(":reuseport=1")?;
        }
        Ok(())
    }
}

/// A TLS client (`tls`): TCP (Happy Eyeballs, as for `tcp`) plus verification of the
/// server's certificate against `host` (sent with SNI), with the system's trust roots
/// unless `trustRoots` names others.
///
/// ```
/// use torsion_endpoints::{parse_client, TlsClient};
///
/// let spec = parse_client("tls:example.org:443:alpn=h2,http/1.1").unwrap();
/// let tls = spec.downcast_ref::<TlsClient>().unwrap();
/// assert_eq!((tls.tcp.host.as_str(), tls.tcp.port), ("example.org", 443));
/// assert_eq!(tls.alpn, ["h2", "http/1.1"]);
/// ```
#[derive(Clone, Debug)]
pub struct TlsClient {
    /// Where to connect (`host`, `port`, `timeout`, `bindAddress`), as for `tcp`.
    pub tcp: TcpClient,
    /// `trustRoots`: a CA file or a directory of them, instead of the system's.
    pub trust_roots: Option<PathBuf>,
    /// `certificate`: a client certificate to present when asked.
    pub certificate: Option<PathBuf>,
    /// `privateKey`: its key (default: the `certificate` file).
    pub private_key: Option<PathBuf>,
    /// `alpn`: the ALPN protocols offered.
    pub alpn: Vec<String>,
    /// Built at the first connect and kept, so that later connects resume the session.
    connector: OnceLock<TlsConnector>,
}

impl PartialEq for TlsClient {
    fn eq(&self, other: &TlsClient) -> bool {
        (
            &self.tcp,
            &self.trust_roots,
            &self.certificate,
            &self.private_key,
            &self.alpn,
        ) == (
            &other.tcp,
            &other.trust_roots,
            &other.certificate,
            &other.private_key,
            &other.alpn,
        )
    }
}

impl TlsClient {
    /// A `tls` client for `host`:`port` with the defaults (the system's trust roots, no
    /// client certificate, no ALPN, 30 s to connect).
    pub fn new(host: impl Into<String>, port: u16) -> TlsClient {
        TlsClient {
            tcp: TcpClient::new(host, port),
            trust_roots: None,
            certificate: None,
            private_key: None,
            alpn: Vec::new(),
            connector: OnceLock::new(),
        }
    }

    /// The client certificate, if any, read and checked.
    fn identity(&self) -> Result<Option<Identity>, ConfigError> {
        match &self.certificate {
            None => Ok(None),
            Some(cert) => {
                let key = self.private_key.as_ref().unwrap_or(cert);
                Identity::from_pem_files(cert, key).map(Some)
            }
        }
    }

    /// Reads and checks the files, giving the TLS options the client connects with.
    pub fn options(&self) -> Result<ClientOptions, ConfigError> {
        let mut options = ClientOptions::new().alpn(&self.alpn);
        if let Some(roots) = &self.trust_roots {
            options = options.trust_roots(TrustRoots::from_pem_file(roots)?);
        }
        if let Some(identity) = self.identity()? {
            options = options.identity(identity);
        }
        Ok(options)
    }

    fn connector(&self) -> Result<TlsConnector, ConfigError> {
        if let Some(c) = self.connector.get() {
            return Ok(c.clone());
        }
        let built = self.options()?.build()?;
        Ok(self.connector.get_or_init(|| built).clone())
    }

    fn param_of(&self, path: Option<&Path>) -> Option<&'static str> {
        let path = path?;
        if self.trust_roots.as_deref() == Some(path) {
            Some("trustRoots")
        } else if self.private_key.as_deref() == Some(path) {
            Some("privateKey")
        } else if self.certificate.as_deref() == Some(path) {
            Some("certificate")
        } else {
            None
        }
    }

    /// [`ClientSpec::connect`] with the factory's type kept (see [`crate::types::connect`]).
    pub(crate) fn connect_with<C: ClientFactory>(
        &self,
        reactor: &Reactor,
        factory: SharedFactory<C>,
    ) -> Deferred<Transport> {
        let target = target_name(&self.tcp.host, self.tcp.port);
        let tls = self
            .connector()
            .and_then(|connector| connector.wrap(&self.tcp.host, factory));
        let tls = match tls {
            Ok(tls) => SharedFactory::new(tls),
            Err(e) => {
                return Deferred::fail(Error::new(
                    torsion_reactor::ErrorKind::InvalidInput,
                    format!("cannot connect to {target}: {e}"),
                ));
            }
        };
        let handshake = tls.next_handshake();
        self.tcp.connect_with(reactor, tls).and_then(move |_tcp| {
            handshake.map_err(move |e| match e.tls_failure() {
                Some(failure) => Error::tls(format!("cannot connect to {target}"), failure.clone()),
                None => Error::new(e.kind(), format!("cannot connect to {target}: {e}")),
            })
        })
    }
}

impl ClientSpec for TlsClient {
    fn type_name(&self) -> &str {
        "tls"
    }

    fn params(&self) -> Vec<(String, ParamValue)> {
        let mut p = self.tcp.params();
        p.push(("trustRoots".to_owned(), opt_path(self.trust_roots.as_ref())));
        p.push((
            "certificate".to_owned(),
            opt_path(self.certificate.as_ref()),
        ));
        p.push(("privateKey".to_owned(), opt_path(self.private_key.as_ref())));
        p.push(("alpn".to_owned(), alpn_value(&self.alpn)));
        p
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn destination(&self) -> Address {
        self.tcp.destination()
    }

    /// Connects as `tcp` does, then the TLS handshake; the Deferred fires with the TLS
    /// transport once the handshake is done, or fails naming the host and the cause (an
    /// [`ErrorKind::Tls`](torsion_reactor::ErrorKind::Tls) error for a rejected
    /// certificate, a timeout or a protocol error).
    fn connect(&self, reactor: &Reactor, factory: BoxedClientFactory) -> Deferred<Transport> {
        self.connect_with(reactor, SharedFactory::new(factory))
    }
}

impl fmt::Display for TlsClient {
    /// The canonical description, every given parameter by keyword; it parses back to
    /// `self`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tcp = self.tcp.to_string();
        let rest = tcp.split_once(':').map_or("", |(_, rest)| rest);
        write!(f, "tls:{rest}")?;
        let q = |p: &Path| quote(&path_text(p));
        if let Some(p) = &self.trust_roots {
            write!(f, ":trustRoots={}", q(p))?;
        }
        if let Some(p) = &self.certificate {
            write!(f, ":certificate={}", q(p))?;
        }
        if let Some(p) = &self.private_key {
            write!(f, ":privateKey={}", q(p))?;
        }
        if !self.alpn.is_empty() {
            write!(f, ":alpn={}", quote(&self.alpn.join(",")))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Parsers

/// Twisted's `ssl` order: port, privateKey, certKey, sslmethod, interface, backlog,
/// extraCertChain, dhParameters; then our keywords.
const SERVER_PARAMS: &[ParamSpec] = &[
    ParamSpec::positional("port"),
    ParamSpec::positional("privateKey"),
    ParamSpec::positional("certKey"),
    ParamSpec::positional("sslmethod"),
    ParamSpec::positional("interface"),
    ParamSpec::positional("backlog"),
    ParamSpec::positional("extraCertChain"),
    ParamSpec::positional("dhParameters"),
    ParamSpec::keyword("caCerts"),
    ParamSpec::keyword("requireClientCert"),
    ParamSpec::keyword("alpn"),
    ParamSpec::keyword("reuseport"),
];

/// `ssl` and `tls` servers.
pub(crate) struct TlsServerType {
    pub(crate) name: &'static str,
}

fn path(v: Value<'_>) -> Result<PathBuf, EndpointError> {
    Ok(PathBuf::from(v.non_empty()?))
}

fn alpn(v: Value<'_>) -> Result<Vec<String>, EndpointError> {
    let names: Vec<String> = v.as_str().split(',').map(str::to_owned).collect();
    if names.iter().any(|n| n.is_empty() || n.len() > 255) {
        return Err(v.error(
            ErrorKind::InvalidValue,
            "expected protocol names separated by commas (h2,http/1.1), none empty",
        ));
    }
    Ok(names)
}

/// The endpoint error for a file problem found while parsing: the parameter naming the
/// file, and the problem.
fn file_error(args: &Args<'_>, param: Option<&'static str>, err: ConfigError) -> EndpointError {
    let kind = match err.kind() {
        ConfigErrorKind::MissingFile
        | ConfigErrorKind::UnreadableFile
        | ConfigErrorKind::InvalidPem => ErrorKind::BadFile,
        ConfigErrorKind::InvalidOption => ErrorKind::InvalidValue,
        _ => ErrorKind::BadCertificate,
    };
    let e = args.error(kind, err.message().to_owned());
    match param {
        Some(p) => e.with_param(p),
        None => e,
    }
}

fn interface(b: &Bound<'_>, spec: &mut TcpServer) -> Result<(), EndpointError> {
    if let Some(v) = b.get("interface") {
        let (ip, scope) = v.ip()?;
        spec.interface = ip;
        spec.scope = scope;
    }
    Ok(())
}

impl ServerType for TlsServerType {
    fn name(&self) -> &str {
        self.name
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ServerSpec>, EndpointError> {
        let b = args.bind(SERVER_PARAMS)?;
        let port = b.require("port")?.port()?;
        let mut spec = TlsServer::new(port, path(b.require("privateKey")?)?);
        spec.type_name = self.name;
        interface(&b, &mut spec.tcp)?;
        spec.tcp.backlog = b.parse_or("backlog", DEFAULT_BACKLOG, |v| v.u32_in(1, MAX_BACKLOG))?;
        spec.tcp.reuseport = b.parse_or("reuseport", false, |v| v.flag())?;
        spec.cert_key = b.parse_opt("certKey", path)?;
        spec.extra_cert_chain = b.parse_opt("extraCertChain", path)?;
        spec.dh_parameters = b.parse_opt("dhParameters", path)?;
        spec.ca_certs = b.parse_opt("caCerts", path)?;
        spec.require_client_cert = b.parse_or("requireClientCert", false, |v| v.flag())?;
        spec.alpn = b.parse_or("alpn", Vec::new(), alpn)?;
        spec.tls12_only = b.parse_or("sslmethod", false, |v| {
            match v.choice(&["SSLv23_METHOD", "TLS_METHOD", "TLSv1_2_METHOD"])? {
                2 => Ok(true),
                _ => Ok(false),
            }
        })?;
        if spec.require_client_cert && spec.ca_certs.is_none() {
            return Err(args
                .error(
                    ErrorKind::ConflictingParameters,
                    "requireClientCert=1 needs caCerts=CA.pem (the authorities that sign the \
                     client certificates)",
                )
                .with_param("requireClientCert"));
        }
        if let Err(err) = spec.options() {
            let param = spec.param_of(err.path());
            return Err(file_error(args, param, err));
        }
        Ok(Box::new(spec))
    }
}

/// `tls` clients.
pub(crate) struct TlsClientType;

impl ClientType for TlsClientType {
    fn name(&self) -> &str {
        "tls"
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ClientSpec>, EndpointError> {
        let extra = ["trustRoots", "certificate", "privateKey", "alpn"];
        let b = args.bind(&client_params(args, &extra))?;
        let target = client_target(&b, None)?;
        let mut tcp = TcpClient::new(target.host, target.port);
        tcp.timeout = target.timeout;
        tcp.bind_address = target.bind_address;
        let mut spec = TlsClient::new(target.host, tcp.port);
        spec.tcp = tcp;
        spec.trust_roots = b.parse_opt("trustRoots", path)?;
        spec.certificate = b.parse_opt("certificate", path)?;
        spec.private_key = b.parse_opt("privateKey", path)?;
        spec.alpn = b.parse_or("alpn", Vec::new(), alpn)?;
        if spec.private_key.is_some() && spec.certificate.is_none() {
            return Err(args
                .error(
                    ErrorKind::ConflictingParameters,
                    "privateKey is the key of a client certificate: give certificate=CERT.pem \
                     too",
                )
                .with_param("privateKey"));
        }
        let checked = spec.identity().and_then(|_| match &spec.trust_roots {
            Some(roots) => TrustRoots::from_pem_file(roots).map(drop),
            None => Ok(()),
        });
        if let Err(err) = checked {
            let param = spec.param_of(err.path());
            return Err(file_error(args, param, err));
        }
        Ok(Box::new(spec))
    }
}
