//! Shared pieces of the peer echo servers: the command-line contract they share with torsion's
//! own example servers, and the tokio echo loop used by both tokio peers.
//!
//! The contract: the first argument is an endpoint string, `tcp:PORT` or
//! `tcp:port=P:interface=A` (default `tcp:8000`); once listening the server prints exactly one
//! line `listening on ADDR` (the bound `SocketAddr`, so port 0 shows the real port) to stdout and
//! flushes it; SIGTERM and SIGINT make it exit.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The endpoint used when no argument is given.
pub const DEFAULT_ENDPOINT: &str = "tcp:8000";

/// Parses a Twisted-style TCP server endpoint string into the address to bind.
///
/// Accepts `tcp:PORT`, `tcp:port=P`, `tcp:PORT:interface=A`, `tcp:port=P:interface=A` and a
/// `backlog=N` option (accepted and ignored: every peer uses its own framework's default).
/// Segments are split on `:`; `\` escapes the next character, so an IPv6 interface is written
/// `interface=\:\:1`. The default interface is all IPv4 interfaces, as in Twisted.
pub fn parse_endpoint(s: &str) -> Result<SocketAddr, String> {
    parse_endpoint_of(s, "tcp")
}

/// [`parse_endpoint`] for endpoints of type `kind` (`tcp`, or `udp` for the UDP peer).
pub fn parse_endpoint_of(s: &str, kind: &str) -> Result<SocketAddr, String> {
    let segments = split_segments(s)?;
    let mut it = segments.iter();
    match it.next().map(String::as_str) {
        Some(t) if t == kind => {}
        Some(other) => {
            return Err(format!(
                "endpoint {s:?}: unsupported type {other:?} (only \"{kind}\" is supported here)"
            ));
        }
        None => return Err("empty endpoint string".to_string()),
    }
    let mut port: Option<u16> = None;
    let mut interface: Option<IpAddr> = None;
    let mut positional = 0;
    for seg in it {
        let (key, value) = match seg.split_once('=') {
            Some((k, v)) => (k, v),
            None => {
                positional += 1;
                if positional > 1 {
                    return Err(format!(
                        "endpoint {s:?}: unexpected positional argument {seg:?} (only the port may be positional)"
                    ));
                }
                ("port", seg.as_str())
            }
        };
        match key {
            "port" => {
                if port.is_some() {
                    return Err(format!("endpoint {s:?}: port given twice"));
                }
                port = Some(value.parse().map_err(|_| {
                    format!("endpoint {s:?}: port {value:?} is not a number from 0 to 65535")
                })?);
            }
            "interface" => {
                interface = Some(value.parse().map_err(|_| {
                    format!("endpoint {s:?}: interface {value:?} is not an IP address")
                })?);
            }
            "backlog" => {
                value.parse::<u32>().map_err(|_| {
                    format!("endpoint {s:?}: backlog {value:?} is not a positive number")
                })?;
            }
            _ => return Err(format!("endpoint {s:?}: unknown option {key:?}")),
        }
    }
    let port = port.ok_or_else(|| format!("endpoint {s:?}: no port given"))?;
    let ip = interface.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    Ok(SocketAddr::new(ip, port))
}

fn split_segments(s: &str) -> Result<Vec<String>, String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) => out.last_mut().unwrap().push(e),
                None => return Err(format!("endpoint {s:?}: ends with a lone backslash")),
            },
            ':' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    Ok(out)
}

/// Reads the endpoint from the first command-line argument (or the default) and exits with a
/// message on a bad one. Returns the address and the remaining arguments.
pub fn endpoint_from_args(usage: &str) -> (SocketAddr, Vec<String>) {
    endpoint_of_from_args(usage, "tcp", DEFAULT_ENDPOINT)
}

/// [`endpoint_from_args`] for endpoints of type `kind`, with `default` when none is given.
pub fn endpoint_of_from_args(usage: &str, kind: &str, default: &str) -> (SocketAddr, Vec<String>) {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{usage}");
        std::process::exit(0);
    }
    let ep = if args.first().is_some_and(|a| !a.starts_with("--")) {
        args.remove(0)
    } else {
        default.to_string()
    };
    match parse_endpoint_of(&ep, kind) {
        Ok(addr) => (addr, args),
        Err(e) => {
            eprintln!("error: {e}\n{usage}");
            std::process::exit(2);
        }
    }
}

/// Prints the one `listening on ADDR` line and flushes stdout.
pub fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

/// True for accept errors that mean "out of descriptors": back off instead of spinning.
pub fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// The tokio echo server used by `tokio_echo` and `tokio_mt_echo`: what a tokio user writes.
/// One task per connection running `tokio::io::copy` from the read half to the write half
/// (an 8 KiB buffer per connection); stops on SIGTERM or SIGINT.
pub mod tokio_peer {
    use super::{announce, is_fd_exhaustion};
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::signal::unix::{SignalKind, signal};

    /// Binds, announces, and serves until SIGTERM or SIGINT. Must run inside a tokio runtime.
    pub async fn serve(addr: SocketAddr) -> std::io::Result<()> {
        let listener = TcpListener::bind(addr).await?;
        announce(listener.local_addr()?);
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, _)) => {
                        tokio::spawn(echo(stream));
                    }
                    Err(e) if is_fd_exhaustion(&e) => {
                        eprintln!("accept: {e}; backing off");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => eprintln!("accept: {e}"),
                },
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        Ok(())
    }

    async fn echo(mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.split();
        // Errors (peer reset) just end the connection.
        let _ = tokio::io::copy(&mut rd, &mut wr).await;
    }
}

/// The tokio UDP echo server: what a tokio user writes. One `UdpSocket`, one 64 KiB buffer,
/// `recv_from` then `send_to` for each datagram; stops on SIGTERM or SIGINT.
pub mod tokio_udp_peer {
    use super::announce;
    use std::net::SocketAddr;
    use tokio::net::UdpSocket;
    use tokio::signal::unix::{SignalKind, signal};

    /// Binds, announces, and echoes until SIGTERM or SIGINT. Must run inside a tokio runtime.
    pub async fn serve(addr: SocketAddr) -> std::io::Result<()> {
        let socket = UdpSocket::bind(addr).await?;
        announce(socket.local_addr()?);
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut buf = vec![0u8; 65_536];
        loop {
            tokio::select! {
                r = socket.recv_from(&mut buf) => match r {
                    Ok((n, peer)) => {
                        if let Err(e) = socket.send_to(&buf[..n], peer).await {
                            eprintln!("send_to {peer}: {e}");
                        }
                    }
                    // ICMP errors for earlier datagrams come back here; the socket goes on.
                    Err(e) => eprintln!("recv_from: {e}"),
                },
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_endpoint, parse_endpoint_of};

    #[test]
    fn udp_endpoints_for_the_udp_peer() {
        assert_eq!(
            parse_endpoint_of("udp:port=0:interface=127.0.0.1", "udp")
                .unwrap()
                .to_string(),
            "127.0.0.1:0"
        );
        assert!(parse_endpoint_of("tcp:80", "udp").unwrap_err().contains("\"tcp\""));
    }

    #[test]
    fn parses_the_contract_forms() {
        assert_eq!(
            parse_endpoint("tcp:8000").unwrap().to_string(),
            "0.0.0.0:8000"
        );
        assert_eq!(
            parse_endpoint("tcp:port=0:interface=127.0.0.1")
                .unwrap()
                .to_string(),
            "127.0.0.1:0"
        );
        assert_eq!(
            parse_endpoint("tcp:1234:interface=127.0.0.1")
                .unwrap()
                .to_string(),
            "127.0.0.1:1234"
        );
        assert_eq!(
            parse_endpoint(r"tcp:port=9:interface=\:\:1")
                .unwrap()
                .to_string(),
            "[::1]:9"
        );
        assert_eq!(
            parse_endpoint("tcp:80:backlog=50").unwrap().to_string(),
            "0.0.0.0:80"
        );
    }

    #[test]
    fn rejects_bad_strings_naming_the_part() {
        assert!(parse_endpoint("udp:80").unwrap_err().contains("\"udp\""));
        assert!(parse_endpoint("tcp:http").unwrap_err().contains("\"http\""));
        assert!(
            parse_endpoint("tcp:port=70000")
                .unwrap_err()
                .contains("70000")
        );
        assert!(
            parse_endpoint("tcp:interface=x:1")
                .unwrap_err()
                .contains("\"x\"")
        );
        assert!(
            parse_endpoint("tcp:interface=127.0.0.1")
                .unwrap_err()
                .contains("no port")
        );
        assert!(
            parse_endpoint("tcp:1:2")
                .unwrap_err()
                .contains("positional")
        );
        assert!(
            parse_endpoint("tcp:1:bogus=2")
                .unwrap_err()
                .contains("bogus")
        );
    }
}
