//! The pipelined tokio peer: answers every line with itself, written the way a good tokio
//! user writes a line protocol: `Framed<TcpStream, LinesCodec>`, one `feed` per decoded
//! request, and one `flush` per batch (when the read buffer holds no further complete
//! line, that is before the next read would have to wait).
//!
//! Usage: `tokio_lines [ENDPOINT] [--workers N]`: the `current_thread` runtime, or the
//! multi-thread runtime with N workers.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::codec::{Framed, LinesCodec};

const USAGE: &str = "usage: tokio_lines [ENDPOINT] [--workers N]   (ENDPOINT: tcp:PORT or tcp:port=P:interface=A; default tcp:8000; without --workers: current_thread runtime)";

/// Longest line accepted, as torsion's `Lines` default.
const MAX_LINE: usize = 16_384;

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    peers::announce(listener.local_addr()?);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    tokio::spawn(answer_lines(stream));
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

async fn answer_lines(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut lines = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE));
    while let Some(Ok(line)) = lines.next().await {
        // `feed` buffers (the codec's write buffer is flushed only past its backpressure
        // boundary); the batch goes out in one write once no complete request is left.
        if lines.feed(line).await.is_err() {
            return;
        }
        if !lines.read_buffer().contains(&b'\n') && SinkExt::<String>::flush(&mut lines).await.is_err() {
            return;
        }
    }
}

fn main() {
    let (addr, rest) = peers::endpoint_from_args(USAGE);
    let mut workers: Option<usize> = None;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--workers" => match it.next().and_then(|v| v.parse().ok()).filter(|&n: &usize| n > 0) {
                Some(n) => workers = Some(n),
                None => {
                    eprintln!("error: --workers needs a positive number\n{USAGE}");
                    std::process::exit(2);
                }
            },
            other => {
                eprintln!("error: unexpected argument {other:?}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let rt = match workers {
        None => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .expect("building the tokio runtime");
    if let Err(e) = rt.block_on(serve(addr)) {
        eprintln!("tokio_lines: {addr}: {e}");
        std::process::exit(1);
    }
}
