//! Connecting to a parsed client description.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use torsion_reactor::{
    BoxedClientFactory, Connector, Error, ErrorKind, Reactor, TcpConnectOptions,
};

use crate::client::{ClientFamily, TcpClient, UnixClient};
use crate::listen::socket_addr;

/// The addresses `host` names, in the order to try them.
pub(crate) fn resolve(
    host: &str,
    port: u16,
    family: ClientFamily,
) -> Result<Vec<SocketAddr>, Error> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (host, port)
            .to_socket_addrs()
            .map_err(|e| Error::io(format!("cannot resolve host name {host:?}"), e))?
            .collect(),
    };
    let addrs: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| family != ClientFamily::Ipv6 || a.is_ipv6())
        .collect();
    if addrs.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("host name {host:?} has no usable address"),
        ));
    }
    Ok(addrs)
}

pub(crate) fn tcp(
    spec: &TcpClient,
    reactor: &Reactor,
    factory: BoxedClientFactory,
) -> Result<Connector, Error> {
    let addrs = resolve(&spec.host, spec.port, spec.family)?;
    let bind_addr = match &spec.bind_address {
        Some(b) => Some(socket_addr(b.ip, b.port, b.scope.as_deref())?),
        None => None,
    };
    let options = TcpConnectOptions {
        timeout: Some(spec.timeout),
        bind_addr,
    };
    Ok(reactor.connect_tcp(addrs[0], factory, &options))
}

fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

pub(crate) fn unix(
    spec: &UnixClient,
    reactor: &Reactor,
    factory: BoxedClientFactory,
) -> Result<Connector, Error> {
    if spec.lockfile {
        // Twisted's checkPID: connect only if the server's lock names a live process.
        let lock = lock_path(&spec.path);
        let alive = std::fs::read_to_string(&lock)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists());
        if !alive {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "cannot connect to {}: no live server holds its lock file {}",
                    spec.path.display(),
                    lock.display()
                ),
            ));
        }
    }
    Ok(reactor.connect_unix(&spec.path, factory, Some(spec.timeout)))
}
