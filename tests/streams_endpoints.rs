//! connect_stream and serve_streams over endpoint strings (tcp, unix): the same streams
//! whatever the endpoint, and errors that name the description or the address.

mod common;

use std::time::Duration;

use common::{reactor, wait};
use torsion::endpoints::{client_from_string, connect_stream, serve_streams};
use torsion::reactor::{AsyncStream, Deferred, ErrorKind, Reactor};

/// Answers each line with its length, until end of file.
async fn lengths(mut stream: AsyncStream) -> std::io::Result<()> {
    loop {
        let line = stream.read_line(1024).await?;
        if line.is_empty() {
            return Ok(());
        }
        stream
            .write_all(format!("{}\n", line.len()).as_bytes())
            .await?;
    }
}

/// Connects to `description`, sends two lines and half-closes; returns the answers.
fn ask(r: &Reactor, description: String) -> Vec<u8> {
    let task = r.spawn(async move {
        let mut stream = connect_stream(&description).await?;
        stream.write_all(b"hello\nworld!\n").await?;
        stream.shutdown()?;
        let mut answers = Vec::new();
        loop {
            let chunk = stream.read_chunk(100).await?;
            if chunk.is_empty() {
                return Ok::<_, std::io::Error>(answers);
            }
            answers.extend_from_slice(&chunk);
        }
    });
    wait(r, task).unwrap().unwrap()
}

#[test]
fn over_tcp() {
    let r = reactor();
    let port = serve_streams("tcp:0:interface=127.0.0.1", lengths).unwrap();
    let addr = port.local_addr().socket_addr().unwrap();
    let answers = ask(&r, format!("tcp:host=127.0.0.1:port={}", addr.port()));
    assert_eq!(answers, b"6\n7\n");
    port.stop_listening();
}

#[test]
fn over_unix_sockets() {
    let r = reactor();
    let path = std::env::temp_dir().join(format!("torsion-streams-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let port = serve_streams(&format!("unix:{}:lockfile=0", path.display()), lengths).unwrap();
    let answers = ask(&r, format!("unix:{}", path.display()));
    assert_eq!(answers, b"6\n7\n");
    port.stop_listening();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn errors_name_the_description_or_the_address() {
    let r = reactor();
    let bad = wait(
        &r,
        connect_stream("tcp:host=127.0.0.1:port=nope").map(|_| ()),
    );
    let bad = bad.unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput);
    assert!(bad.to_string().contains("nope"), "{bad}");
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = wait(
        &r,
        connect_stream(&format!("tcp:host=127.0.0.1:port={}", free.port())).map(|_| ()),
    )
    .unwrap_err();
    assert!(
        refused.to_string().contains("connection refused"),
        "{refused}"
    );
    let err = serve_streams("tcp:port=-1", lengths).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn cancelling_connect_stream_stops_the_attempt() {
    let r = reactor();
    let port = serve_streams("tcp:0:interface=127.0.0.1", lengths).unwrap();
    let addr = port.local_addr().socket_addr().unwrap();
    let endpoint =
        client_from_string(&r, &format!("tcp:host=127.0.0.1:port={}", addr.port())).unwrap();
    let connecting: Deferred<AsyncStream> = endpoint.connect_stream();
    connecting.cancel();
    let outcome = wait(&r, connecting.map(|_| ()));
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Cancelled);
    r.run_until(Duration::from_secs(10), || r.open_connections() == 0)
        .expect("nothing left open");
    port.stop_listening();
}
