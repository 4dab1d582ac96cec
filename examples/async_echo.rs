//! The echo server written as async code: one task per connection, reading and writing an
//! `AsyncStream` (asyncio's `start_server`), on any server endpoint.
//!
//! ```text
//! cargo run --release --example async_echo -- tcp:port=7000:interface=127.0.0.1
//! printf 'hello\n' | cargo run --example async_echo_client -- tcp:host=127.0.0.1:port=7000
//! ```
//!
//! Same command-line contract and behaviour as `echo_server`: a client that sends without
//! reading its echoes is held back (the task waits in `drain`, so it stops reading, its
//! buffer fills, reading from the socket pauses and TCP pushes back on the client), so it
//! cannot grow the server's memory; when a client half-closes, everything it sent is
//! echoed, then the server closes.

use torsion::endpoints::server_from_string;
use torsion::program;
use torsion::reactor::{AsyncStream, Reactor};

/// Echoes until the client's end of file; returning drops the stream, which closes the
/// connection once the last echo is sent.
async fn echo(mut stream: AsyncStream) -> std::io::Result<()> {
    loop {
        let chunk = stream.read_chunk(64 * 1024).await?;
        if chunk.is_empty() {
            return Ok(());
        }
        stream.write_bytes(chunk)?; // never blocks
        stream.drain().await?; // waits while the client is not reading
    }
}

fn main() {
    program::init_logging();
    let endpoint = program::endpoint_arg("tcp:8000", "[ENDPOINT]   (default tcp:8000)");
    let reactor = Reactor::current();
    let server = match server_from_string(&reactor, &endpoint) {
        Ok(server) => server,
        Err(err) => program::usage_error(&err.to_string()),
    };
    let port = match server.serve_streams(echo) {
        Ok(port) => port,
        Err(err) => program::fail(&err.to_string()),
    };
    program::announce(&reactor, port.local_addr());
    program::run(&reactor);
}
