//! Listening on a parsed server description.

use std::net::{IpAddr, SocketAddr, SocketAddrV6, TcpListener};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use torsion_reactor::{
    BoxedFactory, Error, ErrorKind, ListeningPort, Reactor, TcpListenOptions, UnixListenOptions,
};

use crate::server::{SocketDomain, SystemdServer, TcpServer, UnixServer};
use crate::systemd::ListenEnv;

/// An interface index for an IPv6 `%scope` (a number, or an interface name).
pub(crate) fn scope_id(scope: Option<&str>) -> Result<u32, Error> {
    let Some(scope) = scope else { return Ok(0) };
    if let Ok(n) = scope.parse::<u32>() {
        return Ok(n);
    }
    let name = std::ffi::CString::new(scope).map_err(|_| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("invalid IPv6 scope {scope:?}"),
        )
    })?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("no network interface named {scope:?} for the IPv6 scope"),
        ));
    }
    Ok(index)
}

pub(crate) fn socket_addr(ip: IpAddr, port: u16, scope: Option<&str>) -> Result<SocketAddr, Error> {
    Ok(match ip {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V4(v4), port),
        IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope_id(scope)?)),
    })
}

pub(crate) fn tcp(
    spec: &TcpServer,
    reactor: &Reactor,
    factory: BoxedFactory,
) -> Result<ListeningPort, Error> {
    let addr = socket_addr(spec.interface, spec.port, spec.scope.as_deref())?;
    let options = TcpListenOptions {
        backlog: spec.backlog,
        reuse_port: spec.reuseport,
        ipv6_only: spec.ipv6only,
    };
    reactor.listen_tcp_with(addr, factory, &options)
}

fn lock_path(address: &Path) -> PathBuf {
    let mut s = address.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Takes `PATH.lock` for this process. A lock left by a dead process is stale: it and the
/// socket path are removed. A lock held by a live process is an error: its socket is never
/// stolen.
fn take_lock(address: &Path) -> Result<PathBuf, Error> {
    let lock = lock_path(address);
    let display = address.display();
    match std::fs::read_to_string(&lock) {
        Ok(text) => {
            let holder = text.trim().parse::<u32>().ok();
            match holder {
                Some(pid) if pid != std::process::id() && process_alive(pid) => {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "cannot listen on {display}: the socket is in use by process {pid} \
                             (lock file {})",
                            lock.display()
                        ),
                    ));
                }
                _ => {
                    log::info!("removing the stale socket {display} and its lock file");
                    let _ = std::fs::remove_file(address);
                    let _ = std::fs::remove_file(&lock);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::io(
                format!("cannot read the lock file {}", lock.display()),
                e,
            ));
        }
    }
    std::fs::write(&lock, format!("{}\n", std::process::id()))
        .map_err(|e| Error::io(format!("cannot write the lock file {}", lock.display()), e))?;
    Ok(lock)
}

pub(crate) fn unix(
    spec: &UnixServer,
    reactor: &Reactor,
    factory: BoxedFactory,
) -> Result<ListeningPort, Error> {
    let lock_file = if spec.lockfile {
        Some(take_lock(&spec.address)?)
    } else {
        None
    };
    let options = UnixListenOptions {
        backlog: spec.backlog,
        mode: spec.mode,
        remove_on_stop: true,
        lock_file: lock_file.clone(),
    };
    let result = reactor.listen_unix_with(&spec.address, factory, &options);
    if result.is_err() {
        if let Some(lock) = lock_file {
            let _ = std::fs::remove_file(lock);
        }
    }
    result
}

fn socket_domain(fd: RawFd) -> Option<i32> {
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `domain`/`len` are valid for writes of the given size; a bad fd just fails.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut domain as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(domain)
}

pub(crate) fn systemd(
    spec: &SystemdServer,
    reactor: &Reactor,
    factory: BoxedFactory,
) -> Result<ListeningPort, Error> {
    let env = ListenEnv::from_process_env();
    let fd = spec
        .resolve_fd(&env, std::process::id())
        .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("systemd socket: {e}")))?;
    let (want, name) = match spec.domain {
        SocketDomain::Inet => (libc::AF_INET, "INET"),
        SocketDomain::Inet6 => (libc::AF_INET6, "INET6"),
        SocketDomain::Unix => (libc::AF_UNIX, "UNIX"),
    };
    match socket_domain(fd) {
        Some(d) if d == want => {}
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("systemd socket: descriptor {fd} is not an {name} socket"),
            ));
        }
        None => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("systemd socket: descriptor {fd} is not an open socket"),
            ));
        }
    }
    // Each inherited descriptor is taken over once: a second adoption would close it twice
    // (or, once closed, take whatever later reused its number).
    static ADOPTED: std::sync::Mutex<Vec<RawFd>> = std::sync::Mutex::new(Vec::new());
    {
        let mut adopted = ADOPTED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if adopted.contains(&fd) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("systemd socket: descriptor {fd} was already adopted by this process"),
            ));
        }
        adopted.push(fd);
    }
    // SAFETY: systemd passed this descriptor to this process for it to own (LISTEN_PID
    // matched); we checked above that it is an open socket of the expected family, and
    // that it was not adopted before.
    match spec.domain {
        SocketDomain::Unix => {
            let listener = unsafe { UnixListener::from_raw_fd(fd) };
            reactor.adopt_unix_listener(listener, factory)
        }
        _ => {
            let listener = unsafe { TcpListener::from_raw_fd(fd) };
            reactor.adopt_tcp_listener(listener, factory)
        }
    }
}
