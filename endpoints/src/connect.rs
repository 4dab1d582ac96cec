//! Connecting to a parsed client description.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use torsion_reactor::{
    BoxedClientFactory, BoxedFactory, Connector, Deferred, Error, ErrorKind, Reactor,
    TcpConnectOptions, Transport,
};

use crate::client::{ClientFamily, TcpClient, UnixClient};
use crate::happy_eyeballs::{self, RaceOptions, target_name};
use crate::listen::socket_addr;
use crate::values;

/// The local address to bind, if the description gives one.
fn bind_addr(spec: &TcpClient) -> Result<Option<SocketAddr>, Error> {
    match &spec.bind_address {
        Some(b) => Ok(Some(socket_addr(b.ip, b.port, b.scope.as_deref())?)),
        None => Ok(None),
    }
}

/// The addresses a resolved host name may use: IPv6 only for `tcp6`, and only the bind
/// address's family when there is one.
fn usable(
    found: Vec<SocketAddr>,
    spec: &TcpClient,
    bind: Option<SocketAddr>,
    target: &str,
) -> Result<Vec<SocketAddr>, Error> {
    let count = found.len();
    let addrs: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| spec.family != ClientFamily::Ipv6 || a.is_ipv6())
        .filter(|a| bind.is_none_or(|b| b.is_ipv4() == a.is_ipv4()))
        .collect();
    if !addrs.is_empty() {
        return Ok(addrs);
    }
    let why = match (count, bind, spec.family) {
        (0, _, _) => "the host name has no address".to_owned(),
        (_, _, ClientFamily::Ipv6) => "the host name has no IPv6 address (tcp6)".to_owned(),
        (_, Some(b), _) => format!(
            "the host name has no {} address to use with bindAddress {}",
            if b.is_ipv4() { "IPv4" } else { "IPv6" },
            b.ip()
        ),
        _ => "the host name has no usable address".to_owned(),
    };
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!("cannot connect to {target}: {why}"),
    ))
}

/// Resolves `spec.host` on the reactor's thread pool (`getaddrinfo` blocks); an IP literal
/// needs no resolution.
fn resolve(
    reactor: &Reactor,
    spec: &TcpClient,
    bind: Option<SocketAddr>,
    target: &str,
) -> Deferred<Vec<SocketAddr>> {
    if let Ok((ip, scope)) = values::scoped_ip(&spec.host) {
        return Deferred::resolved(socket_addr(ip, spec.port, scope.as_deref()).map(|a| vec![a]));
    }
    let host = spec.host.clone();
    let port = spec.port;
    let spec = spec.clone();
    let target = target.to_owned();
    reactor
        .defer_to_thread(move || {
            (host.as_str(), port)
                .to_socket_addrs()
                .map(|found| found.collect::<Vec<SocketAddr>>())
        })
        .try_map(move |found| {
            let found = found.map_err(|e| {
                Error::io(
                    format!("cannot connect to {target}: cannot resolve the host name"),
                    e,
                )
            })?;
            usable(found, &spec, bind, &target)
        })
}

/// `tcp:`/`tcp6:` clients: resolve off the reactor thread, then Happy Eyeballs.
pub(crate) fn tcp(
    spec: &TcpClient,
    reactor: &Reactor,
    factory: BoxedFactory,
) -> Deferred<Transport> {
    let target = target_name(&spec.host, spec.port);
    let bind = match bind_addr(spec) {
        Ok(bind) => bind,
        Err(e) => return Deferred::fail(e),
    };
    let addresses = resolve(reactor, spec, bind, &target);
    let options = RaceOptions {
        timeout: Some(spec.timeout),
        ..RaceOptions::new(target)
    };
    happy_eyeballs::connect_tcp(reactor, options, addresses, bind, factory)
}

/// `tcp:` clients the old way, for [`connect_now`](crate::ClientEndpoint::connect_now): a
/// host name is resolved on the calling thread and only its first address is tried.
pub(crate) fn tcp_connector(
    spec: &TcpClient,
    reactor: &Reactor,
    factory: BoxedClientFactory,
) -> Result<Connector, Error> {
    let target = target_name(&spec.host, spec.port);
    let bind = bind_addr(spec)?;
    let found: Vec<SocketAddr> = match values::scoped_ip(&spec.host) {
        Ok((ip, scope)) => vec![socket_addr(ip, spec.port, scope.as_deref())?],
        Err(_) => (spec.host.as_str(), spec.port)
            .to_socket_addrs()
            .map_err(|e| {
                Error::io(
                    format!("cannot connect to {target}: cannot resolve the host name"),
                    e,
                )
            })?
            .collect(),
    };
    let addrs = happy_eyeballs::interleave(usable(found, spec, bind, &target)?);
    let options = TcpConnectOptions {
        timeout: Some(spec.timeout),
        bind_addr: bind,
    };
    Ok(reactor.connect_tcp_with(addrs[0], factory, &options))
}

fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Twisted's `checkPID`: connecting is allowed only if the server's lock names a live
/// process.
fn check_lock(spec: &UnixClient) -> Result<(), Error> {
    if !spec.lockfile {
        return Ok(());
    }
    let lock = lock_path(&spec.path);
    let alive = std::fs::read_to_string(&lock)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists());
    if alive {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!(
            "cannot connect to {}: no live server holds its lock file {}",
            spec.path.display(),
            lock.display()
        ),
    ))
}

/// `unix:` clients: one attempt, with the description's timeout.
pub(crate) fn unix(
    spec: &UnixClient,
    reactor: &Reactor,
    factory: BoxedFactory,
) -> Deferred<Transport> {
    if let Err(e) = check_lock(spec) {
        return Deferred::fail(e);
    }
    let path = spec.path.clone();
    let timeout = Some(spec.timeout);
    let reactor = reactor.clone();
    happy_eyeballs::attempt(
        spec.path.display().to_string(),
        factory,
        None,
        timeout,
        move |f| {
            reactor.connect_unix_with(&path, f, &torsion_reactor::UnixConnectOptions { timeout })
        },
    )
}

/// `unix:` clients the old way, returning the connector.
pub(crate) fn unix_connector(
    spec: &UnixClient,
    reactor: &Reactor,
    factory: BoxedClientFactory,
) -> Result<Connector, Error> {
    check_lock(spec)?;
    Ok(reactor.connect_unix_with(
        &spec.path,
        factory,
        &torsion_reactor::UnixConnectOptions {
            timeout: Some(spec.timeout),
        },
    ))
}
