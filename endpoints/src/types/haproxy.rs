//! `haproxy` servers ([`HaproxyServer`]): any stream server description behind a PROXY
//! protocol reader (its spec, parser and I/O), as Twisted's `haproxy:` plugin.
//!
//! The grammar is `haproxy[:timeout=SECONDS]:INNER`: haproxy's own keywords come before
//! the wrapped description, which is everything from its type on, exactly as written
//! (`haproxy:tcp:port=80:interface=192.168.1.1`, `haproxy:timeout=2:unix:/run/x.sock`).

use std::any::Any;
use std::fmt;
use std::time::Duration;

use torsion_reactor::{BoxedFactory, Error, ListeningPort, Reactor};

use crate::args::{Args, ParamSpec};
use crate::error::{EndpointError, ErrorKind, Side, quoted};
use crate::grammar::tokenize;
use crate::haproxy::{DEFAULT_HEADER_TIMEOUT, ProxyServerFactory};
use crate::spec::{ParamValue, ServerSpec, ServerType};
use crate::types::tls::TlsServer;
use crate::values::format_seconds;

/// A server that reads a PROXY protocol header (version 1 or 2) on each connection before
/// the protocol is built, around the stream server `inner` (`haproxy:tcp:8000`,
/// `haproxy:unix:/run/x.sock`, `haproxy:ssl:443:privateKey=key.pem`). See
/// [`ProxyServerFactory`] for what the protocol sees and what closes a connection.
///
/// ```
/// use std::time::Duration;
/// use torsion_endpoints::{parse_server, HaproxyServer, TcpServer};
///
/// let spec = parse_server("haproxy:timeout=2.5:tcp:8000:interface=127.0.0.1")?;
/// let haproxy = spec.downcast_ref::<HaproxyServer>().unwrap();
/// assert_eq!(haproxy.timeout, Duration::from_millis(2500));
/// assert_eq!(haproxy.inner.downcast_ref::<TcpServer>().unwrap().port, 8000);
/// assert_eq!(haproxy.to_string(), "haproxy:timeout=2.5:tcp:8000:interface=127.0.0.1");
/// # Ok::<(), torsion_endpoints::EndpointError>(())
/// ```
#[derive(Debug)]
pub struct HaproxyServer {
    /// The wrapped server (a stream type: `tcp`, `tcp6`, `unix`, `systemd`, `ssl`, `tls`,
    /// `stdio`).
    pub inner: Box<dyn ServerSpec>,
    /// `timeout`: how long a connection may take to send its whole header.
    pub timeout: Duration,
    /// The wrapped description as written.
    description: String,
}

impl HaproxyServer {
    /// The wrapped description, as it was written.
    pub fn inner_description(&self) -> &str {
        &self.description
    }
}

impl ServerSpec for HaproxyServer {
    fn type_name(&self) -> &str {
        "haproxy"
    }

    fn params(&self) -> Vec<(String, ParamValue)> {
        vec![
            (
                "timeout".to_owned(),
                ParamValue::Float(self.timeout.as_secs_f64()),
            ),
            (
                "endpoint".to_owned(),
                ParamValue::Str(self.description.clone()),
            ),
        ]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    /// Listens with the wrapped server; for TLS (`ssl`, `tls`), the header is read from
    /// the raw bytes before the TLS handshake, as HAProxy sends it.
    fn listen(&self, reactor: &Reactor, factory: BoxedFactory) -> Result<ListeningPort, Error> {
        if let Some(tls) = self.inner.downcast_ref::<TlsServer>() {
            let acceptor = tls.options()?.build()?;
            let reader = ProxyServerFactory::new(acceptor.wrap(factory)).timeout(self.timeout);
            return tls.tcp.listen_with(reactor, reader);
        }
        let reader = ProxyServerFactory::new(factory).timeout(self.timeout);
        self.inner.listen(reactor, BoxedFactory::new(reader))
    }
}

impl fmt::Display for HaproxyServer {
    /// `haproxy:` and the wrapped description as written, with `timeout=` when it is not
    /// the default; it parses back to the same server.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("haproxy:")?;
        if self.timeout != DEFAULT_HEADER_TIMEOUT {
            write!(f, "timeout={}:", format_seconds(self.timeout))?;
        }
        f.write_str(&self.description)
    }
}

/// haproxy's own parameters (keywords only: positionals belong to the wrapped server).
const PARAMS: &[ParamSpec] = &[ParamSpec::keyword("timeout")];

/// Parses the wrapped description (the built-in types).
pub(crate) type ParseInner = fn(&str) -> Result<Box<dyn ServerSpec>, EndpointError>;

/// `haproxy` servers.
pub(crate) struct HaproxyServerType {
    /// How the wrapped description is parsed (the registry's built-in types).
    pub(crate) parse_inner: ParseInner,
}

impl ServerType for HaproxyServerType {
    fn name(&self) -> &str {
        "haproxy"
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ServerSpec>, EndpointError> {
        let input = args.input();
        // The order of the segments matters here (the wrapped description starts at the
        // second positional), so they are read again from the description itself.
        let segments = tokenize(input)?;
        let mut positionals = 0;
        let mut own = Vec::new();
        let mut inner_raw = Vec::new();
        for segment in segments {
            if positionals < 2 && segment.key.is_none() {
                positionals += 1;
            }
            if positionals >= 2 {
                inner_raw.push(segment.raw);
            } else if segment.key.is_some() {
                own.push(segment);
            }
        }
        let own = Args::new(input, Side::Server, "haproxy".to_owned(), Vec::new(), own);
        let bound = own.bind(PARAMS)?;
        let timeout = bound.parse_or("timeout", DEFAULT_HEADER_TIMEOUT, |v| {
            let t = v.seconds()?;
            if t.is_zero() {
                return Err(v.error(ErrorKind::OutOfRange, "expected more than 0 seconds"));
            }
            Ok(t)
        })?;
        if inner_raw.is_empty() {
            return Err(args
                .error(
                    ErrorKind::MissingParameter,
                    "haproxy needs the server description it wraps, after its own \
                     parameters: haproxy:tcp:8000, haproxy:timeout=3:unix:/run/app.sock",
                )
                .with_param("endpoint"));
        }
        let description = inner_raw.join(":");
        let inner = (self.parse_inner)(&description).map_err(|e| {
            let mut detail = format!(
                "the wrapped server {}: {}",
                quoted(&description),
                e.detail()
            );
            if e.kind() == ErrorKind::UnknownParameter && e.param() == Some("timeout") {
                detail.push_str(
                    " (haproxy's own timeout goes before the wrapped description: \
                     haproxy:timeout=3:tcp:8000)",
                );
            }
            let mut err = EndpointError::new(e.kind(), input, detail);
            if let Some(p) = e.param() {
                err = err.with_param(p);
            }
            if let Some(s) = e.segment() {
                err = err.with_segment(s);
            }
            err
        })?;
        if inner.is_datagram() || inner.type_name() == "haproxy" {
            return Err(args
                .error(
                    ErrorKind::WrongTransport,
                    format!(
                        "haproxy wraps a stream server (tcp, tcp6, unix, systemd, ssl, tls, \
                         stdio), not {}",
                        quoted(inner.type_name())
                    ),
                )
                .with_param("endpoint"));
        }
        Ok(Box::new(HaproxyServer {
            inner,
            timeout,
            description,
        }))
    }
}
