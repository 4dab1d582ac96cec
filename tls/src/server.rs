//! The server side: [`ServerOptions`] (identities chosen by SNI, ALPN, client
//! certificates, versions, timeouts) and [`TlsAcceptor`], which makes server TLS layers
//! and can replace its certificates while it runs.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::server::{
    ClientHello, NoServerSessionStorage, ProducesTickets, ResolvesServerCert,
    ServerSessionMemoryCache, StoresServerSessions, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedProtocolVersion};
use torsion_reactor::{Deferred, Error, Factory, Protocol, Transport};

use crate::error::ConfigError;
use crate::factory::{TlsServerFactory, boxed};
use crate::files::{self, Stamp};
use crate::identity::{Identity, name_matches};
use crate::layer::TlsLayer;
use crate::roots::TrustRoots;

/// How long a handshake may take before the connection is closed (both sides), unless
/// set otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often, at most, a server whose certificates came from files checks whether the
/// files changed (on a new connection), unless set otherwise.
pub const DEFAULT_RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Whether a server asks clients for certificates, and which authorities it trusts for
/// them.
#[derive(Clone, Debug, Default)]
pub enum ClientAuth {
    /// Clients are not asked for a certificate (the default).
    #[default]
    None,
    /// Clients are asked; one that sends a certificate must be trusted by these roots, one
    /// that sends none is let in (check [`TlsInfo::peer_certificates`](crate::TlsInfo)).
    Optional(TrustRoots),
    /// Clients must send a certificate these roots trust (mutual TLS).
    Required(TrustRoots),
}

impl ClientAuth {
    fn roots(&self) -> Option<&TrustRoots> {
        match self {
            ClientAuth::None => None,
            ClientAuth::Optional(r) | ClientAuth::Required(r) => Some(r),
        }
    }
}

/// How a TLS server runs: its identities (the first is the default; the others are chosen
/// by the name the client asks for with SNI), client certificates, ALPN protocols,
/// versions, timeouts. [`build`](ServerOptions::build) makes a [`TlsAcceptor`].
///
/// ```no_run
/// use torsion_reactor::{factory_fn, Protocol, Reactor, Transport};
/// use torsion_tls::{ClientAuth, Identity, ServerOptions, TrustRoots};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, t: &Transport, d: &[u8]) { t.write(d); }
/// }
///
/// let acceptor = ServerOptions::from_pem_files("example.org.pem", "example.org.key")?
///     .add_identity(Identity::from_pem_files("example.net.pem", "example.net.key")?)
///     .client_auth(ClientAuth::Optional(TrustRoots::from_pem_file("clients-ca.pem")?))
///     .alpn(["h2", "http/1.1"])
///     .build()?;
/// let reactor = Reactor::current();
/// let port = reactor.listen_tcp("0.0.0.0:443".parse()?, acceptor.wrap(factory_fn(|_| Echo)))?;
/// reactor.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ServerOptions {
    identities: Vec<Identity>,
    client_auth: ClientAuth,
    alpn: Vec<Vec<u8>>,
    versions: Vec<&'static SupportedProtocolVersion>,
    handshake_timeout: Duration,
    reload_check: Option<Duration>,
    tickets: bool,
}

impl ServerOptions {
    /// Options presenting `identity`, with the defaults: no client certificates, no ALPN,
    /// TLS 1.2 and 1.3, a 10 s handshake timeout, session tickets on, files checked for
    /// changes at most once a second.
    pub fn new(identity: Identity) -> ServerOptions {
        ServerOptions {
            identities: vec![identity],
            client_auth: ClientAuth::None,
            alpn: Vec::new(),
            versions: rustls::DEFAULT_VERSIONS.to_vec(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            reload_check: Some(DEFAULT_RELOAD_CHECK),
            tickets: true,
        }
    }

    /// Options presenting the chain in `cert` with the key in `key` (which may be the same
    /// file): [`Identity::from_pem_files`], then [`new`](ServerOptions::new).
    pub fn from_pem_files(
        cert: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
    ) -> Result<ServerOptions, ConfigError> {
        Ok(ServerOptions::new(Identity::from_pem_files(cert, key)?))
    }

    /// Adds an identity presented to clients that ask (SNI) for one of its names. A client
    /// that asks for no name, or for one no identity has, gets the first.
    pub fn add_identity(mut self, identity: Identity) -> ServerOptions {
        self.identities.push(identity);
        self
    }

    /// Asks clients for certificates ([`ClientAuth`]).
    pub fn client_auth(mut self, client_auth: ClientAuth) -> ServerOptions {
        self.client_auth = client_auth;
        self
    }

    /// The ALPN protocols this server speaks, preferred first (`["h2", "http/1.1"]`). A
    /// client offering ALPN with none of them is refused (`no_application_protocol`); one
    /// offering none gets no ALPN protocol.
    pub fn alpn<I, P>(mut self, protocols: I) -> ServerOptions
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// The protocol versions allowed (default both: `&[&rustls::version::TLS13,
    /// &rustls::version::TLS12]`).
    pub fn versions(mut self, versions: &[&'static SupportedProtocolVersion]) -> ServerOptions {
        self.versions = versions.to_vec();
        self
    }

    /// How long a handshake may take (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(mut self, timeout: Duration) -> ServerOptions {
        self.handshake_timeout = timeout;
        self
    }

    /// How often, at most, to check whether the certificate, key and CA files changed, and
    /// reload them if they did (on a new connection; default [`DEFAULT_RELOAD_CHECK`]).
    /// `None`: only [`TlsAcceptor::reload`] reloads.
    pub fn reload_check(mut self, every: Option<Duration>) -> ServerOptions {
        self.reload_check = every;
        self
    }

    /// Session resumption with tickets (on by default): a returning client skips the
    /// full handshake.
    pub fn session_tickets(mut self, on: bool) -> ServerOptions {
        self.tickets = on;
        self
    }

    /// Checks the options and makes the acceptor.
    pub fn build(self) -> Result<TlsAcceptor, ConfigError> {
        if self.alpn.iter().any(Vec::is_empty) {
            return Err(ConfigError::option("an ALPN protocol name cannot be empty"));
        }
        if self.versions.is_empty() {
            return Err(ConfigError::option("no TLS version is allowed"));
        }
        let ticketer: Option<Arc<dyn ProducesTickets>> = if self.tickets {
            Some(rustls::crypto::ring::Ticketer::new().map_err(|e| {
                ConfigError::option(format!("cannot make a session ticket key: {e}"))
            })?)
        } else {
            None
        };
        let cache: Arc<dyn StoresServerSessions> = if self.tickets {
            ServerSessionMemoryCache::new(256)
        } else {
            Arc::new(NoServerSessionStorage {})
        };
        let config = build_config(&self, ticketer.clone(), Arc::clone(&cache))?;
        let paths = watched_paths(&self);
        let stamps = files::stamps(&paths);
        Ok(TlsAcceptor {
            shared: Arc::new(AcceptorShared {
                handshake_timeout: self.handshake_timeout,
                reload_check: self.reload_check,
                ticketer,
                cache,
                current: Mutex::new(Current {
                    config,
                    options: self,
                    watch: Watch {
                        paths,
                        stamps,
                        checked: Instant::now(),
                        failed: None,
                    },
                }),
            }),
        })
    }
}

fn watched_paths(options: &ServerOptions) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = options
        .identities
        .iter()
        .filter_map(|id| id.files.as_ref())
        .flat_map(|f| f.paths())
        .collect();
    paths.extend(options.client_auth.roots().and_then(|r| r.path.clone()));
    paths
}

fn build_config(
    options: &ServerOptions,
    ticketer: Option<Arc<dyn ProducesTickets>>,
    cache: Arc<dyn StoresServerSessions>,
) -> Result<Arc<ServerConfig>, ConfigError> {
    let provider = crate::provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&options.versions)
        .map_err(|e| ConfigError::option(format!("cannot use these TLS versions: {e}")))?;
    let builder = match &options.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional(roots) | ClientAuth::Required(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::clone(&roots.store),
                Arc::clone(&provider),
            );
            let verifier = match &options.client_auth {
                ClientAuth::Optional(_) => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier.build().map_err(|e| {
                ConfigError::option(format!("cannot check client certificates: {e}"))
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let resolver = SniResolver::new(&options.identities)?;
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = options.alpn.clone();
    config.session_storage = cache;
    match ticketer {
        Some(t) => config.ticketer = t,
        None => config.send_tls13_tickets = 0,
    }
    Ok(Arc::new(config))
}

/// Chooses the identity for a client's SNI name: an exact name, then a wildcard, then the
/// first identity.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcards: Vec<(String, Arc<CertifiedKey>)>,
}

impl SniResolver {
    fn new(identities: &[Identity]) -> Result<SniResolver, ConfigError> {
        let Some(first) = identities.first() else {
            return Err(ConfigError::option("a server needs at least one identity"));
        };
        let mut exact = HashMap::new();
        let mut wildcards = Vec::new();
        for id in identities {
            for name in id.names() {
                if name.starts_with("*.") {
                    wildcards.push((name.clone(), Arc::clone(&id.key)));
                } else {
                    exact
                        .entry(name.clone())
                        .or_insert_with(|| Arc::clone(&id.key));
                }
            }
        }
        Ok(SniResolver {
            default: Arc::clone(&first.key),
            exact,
            wildcards,
        })
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(Arc::clone(&self.default));
        };
        let name = name.to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return Some(Arc::clone(key));
        }
        self.wildcards
            .iter()
            .find(|(pattern, _)| name_matches(pattern, &name))
            .map(|(_, key)| Arc::clone(key))
            .or_else(|| Some(Arc::clone(&self.default)))
    }
}

/// What the acceptor serves now, and the files it came from.
struct Current {
    config: Arc<ServerConfig>,
    options: ServerOptions,
    watch: Watch,
}

struct Watch {
    paths: Vec<PathBuf>,
    /// The files as they were when last loaded.
    stamps: Vec<Option<Stamp>>,
    checked: Instant,
    /// The files as they were when a reload last failed (not retried until they change).
    failed: Option<Vec<Option<Stamp>>>,
}

struct AcceptorShared {
    handshake_timeout: Duration,
    reload_check: Option<Duration>,
    /// Kept across reloads, so tickets issued before a renewal still resume.
    ticketer: Option<Arc<dyn ProducesTickets>>,
    cache: Arc<dyn StoresServerSessions>,
    current: Mutex<Current>,
}

/// Makes the server side of TLS connections: wrap a factory with
/// [`wrap`](TlsAcceptor::wrap) and listen with it (on TCP, a Unix socket, anything), wrap
/// a single protocol with [`wrap_protocol`](TlsAcceptor::wrap_protocol), or switch a live
/// connection to TLS with [`start_tls`](TlsAcceptor::start_tls).
///
/// Cheap to clone, and `Send + Sync`: one acceptor can serve reactors on several threads.
/// [`reload`](TlsAcceptor::reload) replaces the certificates (read again from their files)
/// for new connections, without touching the open ones; by default a change of the files
/// is noticed on its own (see [`ServerOptions::reload_check`]).
#[derive(Clone)]
pub struct TlsAcceptor {
    shared: Arc<AcceptorShared>,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current();
        f.debug_struct("TlsAcceptor")
            .field("identities", &current.options.identities)
            .field("alpn", &current.config.alpn_protocols)
            .finish()
    }
}

impl TlsAcceptor {
    fn current(&self) -> MutexGuard<'_, Current> {
        self.shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The rustls configuration new connections get (after noticing changed files).
    pub fn config(&self) -> Arc<ServerConfig> {
        self.check_files();
        Arc::clone(&self.current().config)
    }

    /// The identities served now.
    pub fn identities(&self) -> Vec<Identity> {
        self.current().options.identities.clone()
    }

    /// The handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        self.shared.handshake_timeout
    }

    /// A factory that builds `factory`'s protocols behind a server TLS layer each: listen
    /// with it.
    pub fn wrap<F: Factory>(&self, factory: F) -> TlsServerFactory<F> {
        TlsServerFactory::new(self.clone(), factory)
    }

    /// `protocol` behind a server TLS layer, to be a transport's protocol.
    pub fn wrap_protocol<P: Protocol>(&self, protocol: P) -> Result<TlsLayer, Error> {
        self.layer(boxed(protocol))
    }

    pub(crate) fn layer(&self, protocol: Box<dyn Protocol>) -> Result<TlsLayer, Error> {
        let tls = rustls::ServerConnection::new(self.config()).map_err(|e| {
            Error::new(
                torsion_reactor::ErrorKind::InvalidInput,
                format!("cannot start a TLS server connection: {e}"),
            )
        })?;
        Ok(TlsLayer::new(
            rustls::Connection::Server(tls),
            protocol,
            self.shared.handshake_timeout,
        ))
    }

    /// Switches a live connection to TLS as its server (STARTTLS): from now on its records
    /// are TLS, and `protocol` is told `connection_made` with the TLS transport once the
    /// handshake is done. `received` is what the old protocol already read past the point
    /// of the switch (it is handled as the first TLS bytes: never lost, never read as
    /// plaintext); usually empty. Called from the old protocol's own callback, the switch
    /// happens when that callback returns; plaintext it wrote before calling this is sent
    /// first.
    ///
    /// The Deferred fires with the TLS transport after the handshake, or fails if it
    /// fails. After the switch, write only to the TLS transport.
    pub fn start_tls<P: Protocol>(
        &self,
        transport: &Transport,
        protocol: P,
        received: &[u8],
    ) -> Result<Deferred<Transport>, Error> {
        crate::layer::start_tls(transport, self.layer(boxed(protocol))?, received)
    }

    /// Reads every identity and CA file again and, if all are fine, serves them to new
    /// connections (open ones keep theirs). On an error the acceptor keeps serving what it
    /// had; the error names the file.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let options = self.current().options.clone();
        let mut identities = Vec::with_capacity(options.identities.len());
        for id in &options.identities {
            identities.push(match id.reloaded() {
                Some(loaded) => loaded?,
                None => id.clone(),
            });
        }
        let client_auth = match &options.client_auth {
            ClientAuth::None => ClientAuth::None,
            ClientAuth::Optional(r) => ClientAuth::Optional(r.reloaded().unwrap_or(Ok(r.clone()))?),
            ClientAuth::Required(r) => ClientAuth::Required(r.reloaded().unwrap_or(Ok(r.clone()))?),
        };
        self.replace(ServerOptions {
            identities,
            client_auth,
            ..options
        })
    }

    /// Serves these identities to new connections from now on (open ones keep theirs).
    pub fn set_identities(&self, identities: Vec<Identity>) -> Result<(), ConfigError> {
        let options = self.current().options.clone();
        self.replace(ServerOptions {
            identities,
            ..options
        })
    }

    fn replace(&self, options: ServerOptions) -> Result<(), ConfigError> {
        let config = build_config(
            &options,
            self.shared.ticketer.clone(),
            Arc::clone(&self.shared.cache),
        )?;
        let paths = watched_paths(&options);
        let stamps = files::stamps(&paths);
        let mut current = self.current();
        current.config = config;
        current.options = options;
        current.watch.paths = paths;
        current.watch.stamps = stamps;
        current.watch.failed = None;
        Ok(())
    }

    /// Reloads if the files changed since they were loaded (at most once per
    /// `reload_check`).
    fn check_files(&self) {
        let Some(every) = self.shared.reload_check else {
            return;
        };
        let stamps = {
            let mut current = self.current();
            let watch = &mut current.watch;
            if watch.paths.is_empty() || watch.checked.elapsed() < every {
                return;
            }
            watch.checked = Instant::now();
            let stamps = files::stamps(&watch.paths);
            if stamps == watch.stamps || watch.failed.as_ref() == Some(&stamps) {
                return;
            }
            stamps
        };
        match self.reload() {
            Ok(()) => {
                let current = self.current();
                let names: Vec<&str> = current
                    .options
                    .identities
                    .iter()
                    .flat_map(|id| id.names().iter().map(String::as_str))
                    .collect();
                log::info!(
                    "TLS certificates reloaded from {} (names: {})",
                    current
                        .watch
                        .paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    names.join(", ")
                );
            }
            Err(err) => {
                log::warn!("{err}; the TLS server keeps its previous certificates");
                self.current().watch.failed = Some(stamps);
            }
        }
    }
}
