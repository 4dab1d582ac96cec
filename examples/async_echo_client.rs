//! The echo client written as async code: sends standard input to the server and writes
//! what comes back to standard output; at the end of its input it half-closes the
//! connection, and exits once the server has closed it.
//!
//! ```text
//! printf 'hello\n' | cargo run --example async_echo_client -- tcp:host=127.0.0.1:port=8000
//! ```
//!
//! Two loops run at once on the two halves of the stream: one task forwards standard input
//! (waiting for it to be readable through the reactor, bridged to async code with an
//! `Event`), the main one prints the echoes. Exit status: 2 for a malformed endpoint, 1 if
//! the connection fails (one line naming the address and the cause), 0 otherwise.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;

use torsion::endpoints::client_from_string;
use torsion::program;
use torsion::reactor::{Event, Reactor, StreamWriter};

/// Stops watching standard input when the read waiting on it is dropped.
struct Watching(i32);

impl Drop for Watching {
    fn drop(&mut self) {
        Reactor::current().remove_reader(self.0);
    }
}

/// One chunk of standard input (empty at its end): the reactor says when it is readable,
/// a callback sets an `Event`, and this future waits on it.
async fn read_input(file: &Rc<File>) -> io::Result<Vec<u8>> {
    let readable = Event::new();
    let set = readable.clone();
    Reactor::current().add_reader(Rc::clone(file), move || set.set())?;
    let _watching = Watching(file.as_raw_fd());
    readable.wait().await;
    let mut buf = vec![0u8; 64 * 1024];
    let n = (&**file).read(&mut buf)?; // readable: does not block
    buf.truncate(n);
    Ok(buf)
}

/// Standard input to the server; a half-close at its end.
async fn forward(input: Rc<File>, mut to_server: StreamWriter) -> io::Result<()> {
    loop {
        let chunk = read_input(&input).await?;
        if chunk.is_empty() {
            return to_server.shutdown();
        }
        to_server.write_all(&chunk).await?; // waits while the server is not taking it
    }
}

fn main() {
    program::init_logging();
    let endpoint = program::endpoint_arg(
        "tcp:host=127.0.0.1:port=8000",
        "[ENDPOINT]   (default tcp:host=127.0.0.1:port=8000)",
    );
    let reactor = Reactor::current();
    let endpoint = match client_from_string(&reactor, &endpoint) {
        Ok(e) => e,
        Err(err) => program::usage_error(&err.to_string()),
    };
    // A private handle on fd 0, so std's buffered Stdin reads nothing ahead of the reactor.
    let input = match io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => Rc::new(File::from(fd)),
        Err(err) => program::fail(&format!("cannot use standard input: {err}")),
    };
    let outcome = reactor.run_until_complete(async move {
        let stream = match endpoint.connect_stream().await {
            Ok(stream) => stream,
            Err(err) => program::fail(&err.to_string()),
        };
        let (mut from_server, to_server) = stream.into_split();
        let forwarding = Reactor::current().spawn(forward(input, to_server));
        let mut out = io::stdout().lock();
        let printed = loop {
            match from_server.read_chunk(64 * 1024).await {
                Ok(chunk) if chunk.is_empty() => break Ok(()), // the server closed
                Ok(chunk) => out.write_all(&chunk).and_then(|()| out.flush())?,
                Err(err) => break Err(err),
            }
        };
        forwarding.cancel(); // stop reading standard input
        printed
    });
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(err)) => log::warn!("{err}"),
        Err(err) => program::fail(&err.to_string()),
    }
}
