//! `stdio`: a server over this process's standard input and output (Twisted's `stdio:`
//! endpoint): the spec [`StdioServer`], its parser, and its I/O (the reactor's
//! [`listen_stdio`](torsion_reactor::Reactor::listen_stdio)).
//!
//! The "server" has exactly one connection, made at once: the factory builds one
//! protocol, which reads standard input and writes standard output. This is how a
//! program serves a protocol to whoever started it: inetd-style services, language
//! servers, SSH subsystems, a child process spoken to over pipes.
//!
//! ```
//! use torsion_endpoints::{parse_server, StdioServer};
//!
//! let spec = parse_server("stdio:").unwrap();
//! assert_eq!(spec.downcast_ref::<StdioServer>(), Some(&StdioServer));
//! assert!(spec.params().is_empty());
//! assert!(parse_server("stdio:port=1").is_err()); // no parameters
//! ```

use std::any::Any;
use std::fmt;

use torsion_reactor::{BoxedFactory, Error, Factory, ListeningPort, Reactor};

use crate::args::Args;
use crate::error::EndpointError;
use crate::spec::{ParamValue, ServerSpec, ServerType};

/// A server on standard input and output (`stdio`, or `stdio:` as Twisted writes it). It
/// takes no parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StdioServer;

impl ServerSpec for StdioServer {
    fn type_name(&self) -> &str {
        "stdio"
    }

    fn params(&self) -> Vec<(String, ParamValue)> {
        Vec::new()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    /// Serves one connection, built by the factory, over standard input and output; the
    /// port's address is `standard I/O`.
    fn listen(&self, reactor: &Reactor, factory: BoxedFactory) -> Result<ListeningPort, Error> {
        self.listen_with(reactor, factory)
    }
}

impl StdioServer {
    /// [`ServerSpec::listen`] with the factory's type kept (see [`crate::types::listen`]).
    pub(crate) fn listen_with<F: Factory>(
        &self,
        reactor: &Reactor,
        factory: F,
    ) -> Result<ListeningPort, Error> {
        reactor.listen_stdio(factory)
    }
}

impl fmt::Display for StdioServer {
    /// The canonical description, `stdio`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdio")
    }
}

/// `stdio` servers.
pub(crate) struct StdioServerType;

impl ServerType for StdioServerType {
    fn name(&self) -> &str {
        "stdio"
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ServerSpec>, EndpointError> {
        // Twisted's spelling, `stdio:`, has one empty segment after the type: allowed.
        // (Twisted ignores any argument; anything else is refused here, with the usual
        // message.)
        let twisted_spelling = args.positionals().count() == 1
            && args.positionals().all(str::is_empty)
            && args.keywords().count() == 0;
        if !twisted_spelling {
            args.bind(&[])?;
        }
        Ok(Box::new(StdioServer))
    }
}
