//! systemd socket activation for real: the echo server example is started the way systemd
//! starts a socket-activated service (the listening socket as descriptor 3, `LISTEN_FDS`,
//! `LISTEN_PID` naming the service's own pid, `LISTEN_FDNAMES`) with a `systemd:`
//! endpoint, and must serve on the socket it inherited.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, example};

const LONG: Duration = Duration::from_secs(30);

/// A command that runs `echo_server ENDPOINT` as systemd would for a socket unit: `fd`
/// becomes descriptor 3 and `LISTEN_PID` is the server's own pid (a shell sets it to `$$`
/// and `exec`s the server, which keeps the pid).
fn activated(fd: RawFd, endpoint: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
        .arg(example("echo_server"))
        .arg(endpoint)
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "web")
        .env_remove("LISTEN_PID");
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                // Already in place: just let it survive exec.
                let flags = libc::fcntl(3, libc::F_GETFD);
                if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                // dup2 clears close-on-exec on the copy.
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn echoes_over_tcp(server: &Server, listener_addr: std::net::SocketAddr) {
    assert_eq!(
        server.socket_addr(),
        listener_addr,
        "it serves the inherited socket"
    );
    let mut c = TcpStream::connect(listener_addr).unwrap();
    c.set_read_timeout(Some(LONG)).unwrap();
    c.write_all(b"socket activated\n").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"socket activated\n");
}

#[test]
fn echo_server_adopts_an_inet_socket_by_index() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::start_with(&mut activated(
        listener.as_raw_fd(),
        "systemd:domain=INET:index=0",
    ));
    drop(listener); // the server has its own copy
    echoes_over_tcp(&server, addr);
}

#[test]
fn echo_server_adopts_an_inet_socket_by_name() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::start_with(&mut activated(
        listener.as_raw_fd(),
        "systemd:domain=INET:name=web",
    ));
    drop(listener);
    echoes_over_tcp(&server, addr);
}

#[test]
fn echo_server_adopts_a_unix_socket() {
    let path = std::env::temp_dir().join(format!("torsion-systemd-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _cleanup = Remove(path.clone());
    let listener = UnixListener::bind(&path).unwrap();
    let server = Server::start_with(&mut activated(
        listener.as_raw_fd(),
        "systemd:UNIX:name=web",
    ));
    drop(listener);
    assert_eq!(server.addr, path.display().to_string());
    let mut c = UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(LONG)).unwrap();
    c.write_all(b"over a unix socket").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"over a unix socket");
}

#[test]
fn the_wrong_family_or_name_exits_1_and_says_why() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    for (endpoint, expected) in [
        (
            "systemd:domain=INET6:index=0",
            "systemd socket: descriptor 3 is not an INET6 socket",
        ),
        (
            "systemd:domain=INET:name=admin",
            "no socket named \"admin\" was passed by systemd; names passed: web",
        ),
        (
            "systemd:domain=INET:index=1",
            "index 1 is out of range: systemd passed 1 socket (valid indexes: 0)",
        ),
    ] {
        let out = activated(listener.as_raw_fd(), endpoint)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{endpoint}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expected), "{endpoint}: {err}");
    }
}

#[test]
fn without_activation_a_systemd_endpoint_exits_1() {
    let out = Command::new(example("echo_server"))
        .arg("systemd:domain=INET:index=0")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("LISTEN_PID is not set"), "{err}");
}
