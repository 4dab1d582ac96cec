//! [`Registry`]: endpoint types by name, and the dispatch from a description to its type
//! (the end of the parsing chain: grammar, values, arguments, spec, registry).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::args::Args;
use crate::error::{EndpointError, ErrorKind, Side, quoted};
use crate::grammar::tokenize;
use crate::spec::{ClientSpec, ClientType, ServerSpec, ServerType};
use crate::types;

/// Server types Twisted or its well-known plugins provide that torsion does not support yet.
pub(crate) const UNSUPPORTED_SERVERS: &[&str] = &["onion", "tor", "i2p", "le", "lets"];
/// Client types Twisted or its well-known plugins provide that torsion does not support yet.
pub(crate) const UNSUPPORTED_CLIENTS: &[&str] = &["ssl", "tor", "onion", "i2p"];

/// The endpoint types descriptions may name, for servers and for clients, by lower-case
/// name.
///
/// [`Registry::with_builtins`] (also [`Registry::default`]) has the built-in types; an
/// application may add its own (see [`Args`] for a full example) or replace a built-in one by
/// registering a type of the same name. Registering `stdio` or another reserved name
/// replaces the "not supported yet" answer for it.
///
/// ```
/// use torsion_endpoints::{Registry, TcpServer};
///
/// let registry = Registry::with_builtins();
/// let spec = registry.parse_server("tcp:8000:interface=127.0.0.1").unwrap();
/// let tcp = spec.downcast_ref::<TcpServer>().unwrap();
/// assert_eq!((tcp.port, tcp.interface.to_string()), (8000, "127.0.0.1".to_string()));
/// assert_eq!(
///     registry.server_types().collect::<Vec<_>>(),
///     ["haproxy", "ssl", "stdio", "systemd", "tcp", "tcp6", "tls", "udp", "udp6", "unix", "unixgram"]
/// );
/// ```
pub struct Registry {
    servers: BTreeMap<String, Box<dyn ServerType>>,
    clients: BTreeMap<String, Box<dyn ClientType>>,
}

impl Default for Registry {
    /// The same as [`Registry::with_builtins`].
    fn default() -> Self {
        Registry::with_builtins()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("servers", &self.servers.keys().collect::<Vec<_>>())
            .field("clients", &self.clients.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// A registry with no types at all.
    pub fn empty() -> Self {
        Registry {
            servers: BTreeMap::new(),
            clients: BTreeMap::new(),
        }
    }

    /// A registry with the built-in types: servers `tcp`, `tcp6`, `unix`, `systemd`, `stdio`,
    /// `ssl`, `tls`, `haproxy` (streams) and `udp`, `udp6`, `unixgram` (datagrams); clients `tcp`,
    /// `tcp6`, `unix`, `tls` and `udp`, `udp6`, `unixgram`.
    pub fn with_builtins() -> Self {
        let mut r = Registry::empty();
        for t in types::server_types() {
            r.servers.insert(t.name().to_ascii_lowercase(), t);
        }
        // `haproxy:` wraps a description of the built-in types (parsed when it is).
        let haproxy = types::haproxy::HaproxyServerType {
            parse_inner: |inner| Registry::builtins().parse_server(inner),
        };
        r.servers.insert("haproxy".to_owned(), Box::new(haproxy));
        for t in types::client_types() {
            r.clients.insert(t.name().to_ascii_lowercase(), t);
        }
        r
    }

    /// The shared registry of built-in types used by [`parse_server`](crate::parse_server) and
    /// [`parse_client`](crate::parse_client).
    pub fn builtins() -> &'static Registry {
        static BUILTINS: OnceLock<Registry> = OnceLock::new();
        BUILTINS.get_or_init(Registry::with_builtins)
    }

    /// Adds a server type under its lower-cased name, returning the one it replaces.
    pub fn register_server(
        &mut self,
        server_type: impl ServerType + 'static,
    ) -> Option<Box<dyn ServerType>> {
        let name = server_type.name().to_ascii_lowercase();
        self.servers.insert(name, Box::new(server_type))
    }

    /// Adds a client type under its lower-cased name, returning the one it replaces.
    pub fn register_client(
        &mut self,
        client_type: impl ClientType + 'static,
    ) -> Option<Box<dyn ClientType>> {
        let name = client_type.name().to_ascii_lowercase();
        self.clients.insert(name, Box::new(client_type))
    }

    /// Removes a server type, returning it.
    pub fn unregister_server(&mut self, name: &str) -> Option<Box<dyn ServerType>> {
        self.servers.remove(&name.to_ascii_lowercase())
    }

    /// Removes a client type, returning it.
    pub fn unregister_client(&mut self, name: &str) -> Option<Box<dyn ClientType>> {
        self.clients.remove(&name.to_ascii_lowercase())
    }

    /// The registered server type names, sorted.
    pub fn server_types(&self) -> impl Iterator<Item = &str> {
        self.servers.keys().map(String::as_str)
    }

    /// The registered client type names, sorted.
    pub fn client_types(&self) -> impl Iterator<Item = &str> {
        self.clients.keys().map(String::as_str)
    }

    /// Parses a server description with this registry's types.
    pub fn parse_server(&self, description: &str) -> Result<Box<dyn ServerSpec>, EndpointError> {
        let args = self.split(description, Side::Server)?;
        match self.servers.get(args.type_name()) {
            Some(t) => t.parse(&args),
            None => Err(self.type_error(&args, UNSUPPORTED_SERVERS)),
        }
    }

    /// Parses a client description with this registry's types.
    pub fn parse_client(&self, description: &str) -> Result<Box<dyn ClientSpec>, EndpointError> {
        let args = self.split(description, Side::Client)?;
        match self.clients.get(args.type_name()) {
            Some(t) => t.parse(&args),
            None => Err(self.type_error(&args, UNSUPPORTED_CLIENTS)),
        }
    }

    fn names(&self, side: Side) -> String {
        let names: Vec<&str> = match side {
            Side::Server => self.server_types().collect(),
            Side::Client => self.client_types().collect(),
        };
        if names.is_empty() {
            "none are registered".to_owned()
        } else {
            names.join(", ")
        }
    }

    /// Tokenizes and finds the type (the first positional segment).
    fn split<'a>(&self, description: &'a str, side: Side) -> Result<Args<'a>, EndpointError> {
        let segments = tokenize(description)?;
        let (keywords, mut positionals): (Vec<_>, Vec<_>) =
            segments.into_iter().partition(|s| s.key.is_some());
        if positionals.is_empty() || positionals[0].value.is_empty() {
            return Err(EndpointError::new(
                ErrorKind::MissingType,
                description,
                format!(
                    "no endpoint type: the first positional segment names it \
                     (as in tcp:8000); valid {side} types: {}",
                    self.names(side)
                ),
            ));
        }
        let type_segment = positionals.remove(0);
        let type_name = type_segment.value.to_ascii_lowercase();
        Ok(Args::new(
            description,
            side,
            type_name,
            positionals,
            keywords,
        ))
    }

    fn type_error(&self, args: &Args<'_>, unsupported: &[&str]) -> EndpointError {
        let name = args.type_name();
        let side = args.side();
        if unsupported.contains(&name) {
            args.error(
                ErrorKind::Unsupported,
                format!(
                    "{side} endpoint type {} is not supported yet; supported {side} types: {}",
                    quoted(name),
                    self.names(side)
                ),
            )
            .with_param(name)
        } else {
            args.error(
                ErrorKind::UnknownType,
                format!(
                    "unknown {side} endpoint type {}; valid {side} types: {}",
                    quoted(name),
                    self.names(side)
                ),
            )
            .with_param(name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ParamValue;
    use std::any::Any;

    #[derive(Debug)]
    struct Fake(&'static str);

    impl ServerSpec for Fake {
        fn type_name(&self) -> &str {
            self.0
        }
        fn params(&self) -> Vec<(String, ParamValue)> {
            Vec::new()
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    struct FakeType(&'static str);

    impl ServerType for FakeType {
        fn name(&self) -> &str {
            self.0
        }
        fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ServerSpec>, EndpointError> {
            args.bind(&[])?;
            Ok(Box::new(Fake(self.0)))
        }
    }

    #[test]
    fn registering_a_reserved_name_replaces_not_supported() {
        let mut r = Registry::with_builtins();
        assert_eq!(
            r.parse_server("onion").unwrap_err().kind(),
            ErrorKind::Unsupported
        );
        assert!(r.register_server(FakeType("ONION")).is_none());
        assert_eq!(
            r.parse_server("Onion").expect("parses").type_name(),
            "ONION"
        );
        let e = r.parse_server("onion:extra").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooManyPositionals);
        assert!(e.to_string().contains("takes no positional values"), "{e}");
    }

    #[test]
    fn replacing_and_removing_types() {
        let mut r = Registry::with_builtins();
        assert!(r.register_server(FakeType("tcp")).is_some());
        assert_eq!(r.parse_server("tcp").expect("parses").type_name(), "tcp");
        assert!(r.unregister_server("TCP").is_some());
        assert_eq!(
            r.parse_server("tcp:80").unwrap_err().kind(),
            ErrorKind::UnknownType
        );
        assert!(r.unregister_client("unix").is_some());
        assert!(r.unregister_client("tls").is_some());
        assert!(r.unregister_server("ssl").is_some() && r.unregister_server("tls").is_some());
        assert_eq!(
            r.client_types().collect::<Vec<_>>(),
            ["tcp", "tcp6", "udp", "udp6", "unixgram"]
        );
        for t in ["udp", "udp6", "unixgram"] {
            r.unregister_server(t);
            r.unregister_client(t);
        }
        assert_eq!(
            format!("{r:?}"),
            "Registry { servers: [\"haproxy\", \"stdio\", \"systemd\", \"tcp6\", \"unix\"], clients: [\"tcp\", \"tcp6\"] }"
        );
    }

    #[test]
    fn an_empty_registry_says_so() {
        let r = Registry::empty();
        let e = r.parse_server("tcp:80").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownType);
        assert!(
            e.to_string()
                .ends_with("valid server types: none are registered"),
            "{e}"
        );
        assert!(Registry::default().server_types().count() == 11);
    }
}
