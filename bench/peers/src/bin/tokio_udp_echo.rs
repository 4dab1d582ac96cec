//! UDP echo server on tokio's `current_thread` runtime: the tokio peer of the UDP benchmarks.
//!
//! Usage: `tokio_udp_echo [ENDPOINT]` (default `udp:8000`, e.g. `udp:port=0:interface=127.0.0.1`).

const USAGE: &str = "usage: tokio_udp_echo [ENDPOINT]   (ENDPOINT: udp:PORT or udp:port=P:interface=A; default udp:8000)";

fn main() {
    let (addr, rest) = peers::endpoint_of_from_args(USAGE, "udp", "udp:8000");
    if let Some(extra) = rest.first() {
        eprintln!("error: unexpected argument {extra:?}\n{USAGE}");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    if let Err(e) = rt.block_on(peers::tokio_udp_peer::serve(addr)) {
        eprintln!("tokio_udp_echo: {addr}: {e}");
        std::process::exit(1);
    }
}
