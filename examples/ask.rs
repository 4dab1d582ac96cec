//! Asks a server one question (the guide's third chapter): connects, sends a line, prints
//! the first line that comes back, and exits.
//!
//! ```text
//! cargo run --example first_server &                                   # something to ask
//! cargo run --example ask -- tcp:host=127.0.0.1:port=8000 'anyone there?'
//! ```

use std::time::Duration;

use torsion::prelude::*;
use torsion::program;

/// Sends the question when connected; fires `answer` with the first line that comes back.
struct Ask {
    question: String,
    answer: Option<Resolver<String>>,
    received: Vec<u8>,
}

impl Protocol for Ask {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(format!("{}\n", self.question).as_bytes());
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.received.extend_from_slice(data);
        if let Some(end) = self.received.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.received[..end]).into_owned();
            if let Some(answer) = self.answer.take() {
                let _ = answer.callback(line);
            }
            transport.lose_connection();
        }
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        // Closed before a whole line came: say so (dropping the resolver would also fail
        // the Deferred, with a less helpful message).
        if let Some(answer) = self.answer.take() {
            let message = format!("no answer: {reason}");
            let _ = answer.errback(Error::new(ErrorKind::ConnectionClosed, message));
        }
    }
}

fn main() {
    program::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, question] = args.as_slice() else {
        program::usage_error("usage: ask ENDPOINT QUESTION   (e.g. tcp:host=127.0.0.1:port=8000)");
    };
    let reactor = Reactor::current();
    let endpoint = match client_from_string(&reactor, endpoint) {
        Ok(endpoint) => endpoint,
        Err(err) => program::usage_error(&err.to_string()),
    };

    let (answer, resolver) = Deferred::new();
    let ask = Ask {
        question: question.clone(),
        answer: Some(resolver),
        received: Vec::new(),
    };
    // Connect, then wait for the answer, giving up after 10 seconds in all.
    let asked = endpoint
        .connect_protocol(ask)
        .and_then(move |_transport| answer)
        .with_timeout(Duration::from_secs(10));
    match reactor.run_until_complete(asked) {
        Ok(Ok(line)) => println!("{line}"),
        Ok(Err(err)) if err.kind() == ErrorKind::TimedOut => {
            program::fail("no answer within 10 seconds")
        }
        Ok(Err(err)) | Err(err) => program::fail(&err.to_string()),
    }
}
