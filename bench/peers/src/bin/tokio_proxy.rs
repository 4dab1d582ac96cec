//! A TCP proxy on tokio's `current_thread` runtime, the tokio peer of torsion's
//! `tcp_proxy` example: one task per client, which connects upstream and runs
//! `tokio::io::copy_bidirectional` (an 8 KiB buffer per direction; a half-close is passed
//! on with `shutdown`) — what a tokio user writes.
//!
//! Usage: `tokio_proxy LISTEN_ENDPOINT UPSTREAM` where UPSTREAM is `tcp:host=H:port=P`
//! (or `HOST:PORT`); e.g. `tokio_proxy tcp:port=0:interface=127.0.0.1 tcp:host=127.0.0.1:port=7000`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: tokio_proxy LISTEN_ENDPOINT UPSTREAM   (UPSTREAM: tcp:host=H:port=P or HOST:PORT)";

/// `tcp:host=H:port=P` (H an IP address) or `HOST:PORT`.
fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let rest = s
        .strip_prefix("tcp:")
        .ok_or_else(|| format!("upstream {s:?}: expected tcp:host=H:port=P or HOST:PORT"))?;
    let (mut host, mut port) = (None, None);
    for seg in rest.split(':') {
        match seg.split_once('=') {
            Some(("host", h)) => host = Some(h),
            Some(("port", p)) => port = Some(p),
            _ => return Err(format!("upstream {s:?}: unexpected {seg:?}")),
        }
    }
    let (Some(host), Some(port)) = (host, port) else {
        return Err(format!("upstream {s:?}: needs host= and port="));
    };
    format!("{host}:{port}")
        .parse()
        .map_err(|_| format!("upstream {s:?}: host must be an IP address and port a number"))
}

fn main() {
    let (listen, rest) = peers::endpoint_from_args(USAGE);
    let upstream = match rest.as_slice() {
        [one] => parse_upstream(one).unwrap_or_else(|e| {
            eprintln!("error: {e}\n{USAGE}");
            std::process::exit(2);
        }),
        _ => {
            eprintln!("error: expected LISTEN_ENDPOINT UPSTREAM\n{USAGE}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    if let Err(e) = rt.block_on(serve(listen, upstream)) {
        eprintln!("tokio_proxy: {listen}: {e}");
        std::process::exit(1);
    }
}

async fn serve(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    peers::announce(listener.local_addr()?);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((client, _)) => {
                    tokio::spawn(forward(client, upstream));
                }
                Err(e) if peers::is_fd_exhaustion(&e) => {
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

async fn forward(mut client: TcpStream, upstream: SocketAddr) {
    let _ = client.set_nodelay(true);
    let mut server = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot reach upstream {upstream}: {e}");
            return;
        }
    };
    let _ = server.set_nodelay(true);
    // Errors (a reset) end both connections; they are dropped, so closed.
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
