//! Echo server on tokio's `current_thread` runtime: the single-threaded tokio peer.
//!
//! Usage: `tokio_echo [ENDPOINT]` (default `tcp:8000`, e.g. `tcp:port=0:interface=127.0.0.1`).

const USAGE: &str = "usage: tokio_echo [ENDPOINT]   (ENDPOINT: tcp:PORT or tcp:port=P:interface=A; default tcp:8000)";

fn main() {
    let (addr, rest) = peers::endpoint_from_args(USAGE);
    if let Some(extra) = rest.first() {
        eprintln!("error: unexpected argument {extra:?}\n{USAGE}");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    if let Err(e) = rt.block_on(peers::tokio_peer::serve(addr)) {
        eprintln!("tokio_echo: {addr}: {e}");
        std::process::exit(1);
    }
}
