//! What a type's parser produces and how a type is plugged in: the [`ServerSpec`] and
//! [`ClientSpec`] trait objects (their type, their parameters as typed [`ParamValue`]s, a
//! downcast to the concrete struct, and how to listen or connect with them), the
//! [`ServerType`] and [`ClientType`] traits a [`Registry`](crate::Registry) dispatches to,
//! and the defaults the built-in types share.

use std::any::Any;
use std::fmt;
use std::time::Duration;

use torsion_reactor::{
    Address, BoxedClientFactory, BoxedFactory, DatagramProtocol, DatagramTransport, Deferred,
    Error as ReactorError, ErrorKind as ReactorErrorKind, ListeningPort, Reactor, Transport,
};

use crate::args::Args;
use crate::error::EndpointError;

/// The listen backlog when none is given: the reactor's default, 1024. (Twisted's is 50;
/// a burst of connections beyond the backlog costs clients a one-second SYN retry, and
/// Linux caps the value at `net.core.somaxconn`, 4096 by default, anyway.)
pub const DEFAULT_BACKLOG: u32 = torsion_reactor::DEFAULT_BACKLOG;
/// The largest backlog accepted (the largest value `listen(2)` takes; the kernel may cap it
/// lower, at `net.core.somaxconn` on Linux).
pub const MAX_BACKLOG: u32 = i32::MAX as u32;
/// How long a connection attempt may take when no `timeout` is given: 30 seconds.
pub const DEFAULT_TIMEOUT: Duration = torsion_reactor::DEFAULT_CONNECT_TIMEOUT;

/// A kind of server endpoint that descriptions can name, such as `tcp`.
pub trait ServerType: Send + Sync {
    /// The name descriptions use for it. Matched without regard to ASCII case.
    fn name(&self) -> &str;
    /// Builds the spec from the segments after the type. Use [`Args::bind`] and the
    /// [`Value`](crate::Value) parsers to get the standard checks and messages.
    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ServerSpec>, EndpointError>;
}

/// A kind of client endpoint that descriptions can name, such as `tcp`.
pub trait ClientType: Send + Sync {
    /// The name descriptions use for it. Matched without regard to ASCII case.
    fn name(&self) -> &str;
    /// Builds the spec from the segments after the type. Use [`Args::bind`] and the
    /// [`Value`](crate::Value) parsers to get the standard checks and messages.
    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ClientSpec>, EndpointError>;
}

/// A parameter value as reported by [`ServerSpec::params`] / [`ClientSpec::params`], typed
/// the way it should appear in JSON.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    /// A whole number (port, backlog, mode, index).
    Int(u64),
    /// A number with a possible fraction (a timeout in seconds).
    Float(f64),
    /// A flag (`reuseport`, `lockfile`).
    Bool(bool),
    /// Text (addresses, paths, names).
    Str(String),
    /// Not set (JSON `null`), such as an absent `bindAddress`.
    Null,
}

impl fmt::Display for ParamValue {
    /// The value as a person reads it: numbers in decimal, `true`/`false`, text as is, and
    /// `none` for [`ParamValue::Null`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(n) => write!(f, "{n}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Str(s) => f.write_str(s),
            ParamValue::Null => f.write_str("none"),
        }
    }
}

/// A parsed server description: where and how to listen.
///
/// The built-in ones are [`TcpServer`](crate::TcpServer), [`UnixServer`](crate::UnixServer)
/// and [`SystemdServer`](crate::SystemdServer) (stream listeners), and
/// [`UdpServer`](crate::UdpServer) and [`UnixgramServer`](crate::UnixgramServer) (datagram
/// ports); get them back with [`downcast_ref`](trait.ServerSpec.html#method.downcast_ref).
pub trait ServerSpec: fmt::Debug + Send + Sync + 'static {
    /// The type's name as registered, lower case (`tcp`, `tcp6`, `unix`, `systemd`, ...).
    fn type_name(&self) -> &str;
    /// Every parameter with its value, defaults filled in, in the type's documented order,
    /// named by the grammar's keywords.
    fn params(&self) -> Vec<(String, ParamValue)>;
    /// `self`, for downcasting to the concrete type.
    fn as_any(&self) -> &dyn Any;

    /// Starts listening on `reactor`, with `factory` building a protocol per connection; the
    /// error names the address and the cause. Types that cannot listen keep the default,
    /// which says so.
    fn listen(
        &self,
        reactor: &Reactor,
        factory: BoxedFactory,
    ) -> Result<ListeningPort, ReactorError> {
        let _ = (reactor, factory);
        Err(ReactorError::new(
            ReactorErrorKind::InvalidInput,
            format!("endpoint type {} cannot listen", self.type_name()),
        ))
    }

    /// Whether this is a datagram endpoint (`udp`, `udp6`, `unixgram`): opened with
    /// [`DatagramEndpoint::listen`](crate::DatagramEndpoint::listen) and a
    /// [`DatagramProtocol`], not with a stream factory. Default: no.
    fn is_datagram(&self) -> bool {
        false
    }

    /// Opens the datagram port on `reactor`, with `protocol` getting its datagrams; the
    /// error names the address and the cause. Stream types keep the default, which says
    /// they cannot.
    fn listen_datagram(
        &self,
        reactor: &Reactor,
        protocol: Box<dyn DatagramProtocol>,
    ) -> Result<DatagramTransport, ReactorError> {
        let _ = (reactor, protocol);
        Err(ReactorError::new(
            ReactorErrorKind::InvalidInput,
            format!(
                "endpoint type {} is not a datagram endpoint (datagram types: udp, udp6, \
                 unixgram)",
                self.type_name()
            ),
        ))
    }
}

impl dyn ServerSpec {
    /// The concrete spec, if it is a `T`.
    ///
    /// ```
    /// use torsion_endpoints::{parse_server, TcpServer};
    ///
    /// let spec = parse_server("tcp:8000").unwrap();
    /// assert_eq!(spec.downcast_ref::<TcpServer>().unwrap().port, 8000);
    /// ```
    pub fn downcast_ref<T: ServerSpec>(&self) -> Option<&T> {
        self.as_any().downcast_ref::<T>()
    }
}

impl<S: ServerSpec> From<S> for Box<dyn ServerSpec> {
    /// Boxes a spec made in Rust, so that [`ServerEndpoint::new`](crate::ServerEndpoint::new)
    /// takes `TcpServer::new(8000)` as well as what a parser returned.
    fn from(spec: S) -> Box<dyn ServerSpec> {
        Box::new(spec)
    }
}

/// A parsed client description: where and how to connect.
///
/// The built-in ones are [`TcpClient`](crate::TcpClient) and
/// [`UnixClient`](crate::UnixClient) (streams), and [`UdpClient`](crate::UdpClient) and
/// [`UnixgramClient`](crate::UnixgramClient) (connected datagram ports).
pub trait ClientSpec: fmt::Debug + Send + Sync + 'static {
    /// The type's name as registered, lower case (`tcp`, `tcp6`, `unix`, ...).
    fn type_name(&self) -> &str;
    /// Every parameter with its value, defaults filled in, in the type's documented order,
    /// named by the grammar's keywords.
    fn params(&self) -> Vec<(String, ParamValue)>;
    /// `self`, for downcasting to the concrete type.
    fn as_any(&self) -> &dyn Any;

    /// Where it connects, for messages and [`Connector::destination`](torsion_reactor::Connector::destination):
    /// the built-in types give the IP address and port, the host name and port, or the
    /// socket path. The default is the type's name.
    fn destination(&self) -> Address {
        Address::Other(self.type_name().to_owned())
    }

    /// Connects once on `reactor`; `factory` builds the protocol of the connection. The
    /// Deferred fires with the connection's transport (after the protocol's
    /// `connection_made`), or fails with an error naming where it tried to connect and why;
    /// cancelling it stops the attempt.
    ///
    /// `factory` is told [`client_connection_made`](torsion_reactor::ClientFactory::client_connection_made)
    /// and [`client_connection_lost`](torsion_reactor::ClientFactory::client_connection_lost)
    /// for the connection this makes, and nothing else: not `started_connecting` nor
    /// `client_connection_failed` (the Deferred says how the attempt went), nor
    /// `start_factory`/`stop_factory` (the [`ClientEndpoint`](crate::ClientEndpoint) calls
    /// those once, however many attempts a connect makes). Types that cannot connect keep
    /// the default, which says so.
    fn connect(&self, reactor: &Reactor, factory: BoxedClientFactory) -> Deferred<Transport> {
        let _ = (reactor, factory);
        Deferred::fail(ReactorError::new(
            ReactorErrorKind::InvalidInput,
            format!("endpoint type {} cannot connect", self.type_name()),
        ))
    }

    /// Whether this is a datagram endpoint (`udp`, `udp6`, `unixgram`): connected with
    /// [`DatagramClientEndpoint::connect`](crate::DatagramClientEndpoint::connect). Default:
    /// no.
    fn is_datagram(&self) -> bool {
        false
    }

    /// Opens a datagram port connected to the described peer (resolving a host name off
    /// the reactor thread first); the Deferred fires with its transport, before the
    /// protocol's `connection_made` (which runs from the loop). Stream types keep the
    /// default, which says they cannot.
    fn connect_datagram(
        &self,
        reactor: &Reactor,
        protocol: Box<dyn DatagramProtocol>,
    ) -> Deferred<DatagramTransport> {
        let _ = (reactor, protocol);
        Deferred::fail(ReactorError::new(
            ReactorErrorKind::InvalidInput,
            format!(
                "endpoint type {} is not a datagram endpoint (datagram types: udp, udp6, \
                 unixgram)",
                self.type_name()
            ),
        ))
    }
}

impl dyn ClientSpec {
    /// The concrete spec, if it is a `T`.
    ///
    /// ```
    /// use torsion_endpoints::{parse_client, TcpClient};
    ///
    /// let spec = parse_client("tcp:example.org:80").unwrap();
    /// assert_eq!(spec.downcast_ref::<TcpClient>().unwrap().host, "example.org");
    /// ```
    pub fn downcast_ref<T: ClientSpec>(&self) -> Option<&T> {
        self.as_any().downcast_ref::<T>()
    }
}

impl<S: ClientSpec> From<S> for Box<dyn ClientSpec> {
    /// Boxes a spec made in Rust, so that [`ClientEndpoint::new`](crate::ClientEndpoint::new)
    /// takes `TcpClient::new("example.org", 80)` as well as what a parser returned.
    fn from(spec: S) -> Box<dyn ClientSpec> {
        Box::new(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_values_display() {
        assert_eq!(ParamValue::Int(80).to_string(), "80");
        assert_eq!(ParamValue::Float(1.5).to_string(), "1.5");
        assert_eq!(ParamValue::Float(30.0).to_string(), "30");
        assert_eq!(ParamValue::Bool(true).to_string(), "true");
        assert_eq!(ParamValue::Str("a:b".into()).to_string(), "a:b");
        assert_eq!(ParamValue::Null.to_string(), "none");
    }
}
