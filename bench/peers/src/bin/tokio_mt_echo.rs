//! Echo server on tokio's multi-thread runtime: the multi-core tokio peer.
//!
//! Usage: `tokio_mt_echo [ENDPOINT] [--workers N]`. The worker count comes from `--workers`,
//! else from the `TOKIO_WORKER_THREADS` environment variable, else 2.

const USAGE: &str = "usage: tokio_mt_echo [ENDPOINT] [--workers N]   (ENDPOINT: tcp:PORT or tcp:port=P:interface=A; default tcp:8000; workers: --workers, else $TOKIO_WORKER_THREADS, else 2)";

fn main() {
    let (addr, rest) = peers::endpoint_from_args(USAGE);
    let mut workers: Option<usize> = None;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let v = match a.as_str() {
            "--workers" => it.next().map(String::as_str),
            s if s.starts_with("--workers=") => Some(&s["--workers=".len()..]),
            other => {
                eprintln!("error: unexpected argument {other:?}\n{USAGE}");
                std::process::exit(2);
            }
        };
        match v.and_then(|v| v.parse().ok()).filter(|&n: &usize| n > 0) {
            Some(n) => workers = Some(n),
            None => {
                eprintln!("error: --workers needs a positive number\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let workers = workers
        .or_else(|| {
            std::env::var("TOKIO_WORKER_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&n: &usize| n > 0)
        })
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    if let Err(e) = rt.block_on(peers::tokio_peer::serve(addr)) {
        eprintln!("tokio_mt_echo: {addr}: {e}");
        std::process::exit(1);
    }
}
