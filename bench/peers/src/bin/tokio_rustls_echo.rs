//! TLS echo server on tokio's `current_thread` runtime with tokio-rustls (rustls, ring
//! provider): the peer of torsion's `echo_server` with an `ssl:` endpoint. Session tickets
//! on (a ring `Ticketer`, as torsion-tls), TLS 1.2 and 1.3, one task per connection copying
//! with `tokio::io::copy` (8 KiB buffer), `close_notify` when the client is done.
//!
//! Usage: `tokio_rustls_echo ENDPOINT --cert CERT.pem --key KEY.pem`.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_rustls::TlsAcceptor;

const USAGE: &str = "usage: tokio_rustls_echo ENDPOINT --cert CERT.pem --key KEY.pem";

fn config(cert: &str, key: &str) -> Result<rustls::ServerConfig, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{key}: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| e.to_string())?;
    Ok(config)
}

fn main() {
    let (addr, rest) = peers::endpoint_from_args(USAGE);
    let mut cert = None;
    let mut key = None;
    let mut it = rest.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--cert" => cert = it.next(),
            "--key" => key = it.next(),
            other => {
                eprintln!("error: unexpected argument {other:?}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        eprintln!("error: --cert and --key are required\n{USAGE}");
        std::process::exit(2);
    };
    let acceptor = match config(&cert, &key) {
        Ok(c) => TlsAcceptor::from(Arc::new(c)),
        Err(e) => {
            eprintln!("tokio_rustls_echo: {e}");
            std::process::exit(1);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    if let Err(e) = rt.block_on(serve(addr, acceptor)) {
        eprintln!("tokio_rustls_echo: {addr}: {e}");
        std::process::exit(1);
    }
}

async fn serve(addr: std::net::SocketAddr, acceptor: TlsAcceptor) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    peers::announce(listener.local_addr()?);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        let Ok(tls) = acceptor.accept(stream).await else { return };
                        let (mut rd, mut wr) = tokio::io::split(tls);
                        if tokio::io::copy(&mut rd, &mut wr).await.is_ok() {
                            let _ = wr.shutdown().await; // close_notify
                        }
                    });
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
