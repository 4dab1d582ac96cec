//! What parsing produces: [`ServerSpec`] and [`ClientSpec`] trait objects, which report their
//! type and their parameters as typed [`ParamValue`]s, and downcast to the concrete structs.

use std::any::Any;
use std::fmt;

use torsion_reactor::{
    BoxedClientFactory, BoxedFactory, Connector, Deferred, Error as ReactorError,
    ErrorKind as ReactorErrorKind, ListeningPort, Reactor, Transport,
};

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
/// and [`SystemdServer`](crate::SystemdServer); get them back with
/// [`downcast_ref`](trait.ServerSpec.html#method.downcast_ref).
pub trait ServerSpec: fmt::Debug + Send + Sync + 'static {
    /// The type's name as registered, lower case (`tcp`, `tcp6`, `unix`, `systemd`, ...).
    fn type_name(&self) -> &str;
    /// Every parameter with its value, defaults filled in, in the type's documented order,
    /// named by the grammar's keywords.
    fn params(&self) -> Vec<(String, ParamValue)>;
    /// `self`, for downcasting to the concrete type.
    fn as_any(&self) -> &dyn Any;

    /// Starts listening on `reactor`, with `factory` building a protocol per connection.
    /// Types that cannot listen keep the default, which says so.
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

/// A parsed client description: where and how to connect.
///
/// The built-in ones are [`TcpClient`](crate::TcpClient) and
/// [`UnixClient`](crate::UnixClient).
pub trait ClientSpec: fmt::Debug + Send + Sync + 'static {
    /// The type's name as registered, lower case (`tcp`, `tcp6`, `unix`, ...).
    fn type_name(&self) -> &str;
    /// Every parameter with its value, defaults filled in, in the type's documented order,
    /// named by the grammar's keywords.
    fn params(&self) -> Vec<(String, ParamValue)>;
    /// `self`, for downcasting to the concrete type.
    fn as_any(&self) -> &dyn Any;

    /// Connects on `reactor`; `factory` builds the protocol of the connection. The Deferred
    /// fires with the connection's transport (after the protocol's `connection_made`), or
    /// fails with an error naming where it tried to connect and why; cancelling it stops
    /// the attempt. Types that cannot connect keep the default, which says so.
    fn connect(&self, reactor: &Reactor, factory: BoxedFactory) -> Deferred<Transport> {
        let _ = (reactor, factory);
        Deferred::fail(ReactorError::new(
            ReactorErrorKind::InvalidInput,
            format!("endpoint type {} cannot connect", self.type_name()),
        ))
    }

    /// Starts connecting at once and returns the [`Connector`] (which can connect again);
    /// `factory` builds the protocol once connected and is told if the attempt fails. The
    /// built-in TCP type resolves a host name on the calling thread and tries its first
    /// address only: prefer [`connect`](ClientSpec::connect). Types that cannot connect
    /// keep the default, which says so.
    fn connect_connector(
        &self,
        reactor: &Reactor,
        factory: BoxedClientFactory,
    ) -> Result<Connector, ReactorError> {
        let _ = (reactor, factory);
        Err(ReactorError::new(
            ReactorErrorKind::InvalidInput,
            format!("endpoint type {} cannot connect", self.type_name()),
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
