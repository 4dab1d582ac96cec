//! A line server for pipelined clients: every line a client sends comes back as a line.
//!
//! ```text
//! cargo run --release --example line_echo -- tcp:port=7000:interface=127.0.0.1
//! printf 'one\ntwo\nthree\n' | nc -q1 127.0.0.1 7000
//! ```
//!
//! The shape of a request/response server (Redis, memcached, SMTP, HTTP/1.1 with
//! pipelining): clients send many requests before reading, and the server answers each one
//! with `send_line` as it handles it, with no buffering of its own. The reactor gathers
//! the replies to everything one read delivered and sends them with one `send`, and the
//! `Lines` adapter stops handling requests while a client is not reading its replies (the
//! write buffer above its high mark), so the natural style is also the fast and bounded one.
//! It is the server of the benchmark suite's pipelined scenarios (`bench/`).

use torsion::prelude::*;

/// Answers each line with that line.
struct LineEcho;

impl LineReceiver for LineEcho {
    fn line_received(&mut self, lines: &mut LineControl<'_>, line: &[u8]) {
        // Refused only once the connection is closing: nothing to do then.
        lines.send_line(line);
    }
}

fn main() {
    torsion::program::serve(
        "tcp:8000",
        factory_fn(|_| Lines::new(LineEcho).with_delimiter(b"\n")),
    );
}
