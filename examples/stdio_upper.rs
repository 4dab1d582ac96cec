//! A line protocol over standard input and output: writes back each line upper-cased.
//!
//! ```text
//! yes | head -c 100M | stdio_upper | wc -c
//! ```
//!
//! A `LineReceiver` on `Reactor::standard_io` (Twisted's `StandardIO`). When standard
//! output cannot keep up, it stops reading standard input until it drains, so its memory
//! stays bounded by the write buffer's marks however much is piped through it. At end of
//! input it writes the last line (even without a newline), flushes, and exits 0; if
//! standard output goes away first, it exits 1.

use std::cell::Cell;
use std::rc::Rc;

use torsion::program;
use torsion::protocols::{LineControl, LineReceiver, Lines};
use torsion::reactor::{ConnectionLost, Reactor};

/// The longest line it accepts; a longer one ends it with an error.
const MAX_LINE: usize = 1024 * 1024;

struct Upper {
    ok: Rc<Cell<bool>>,
    /// Reused for every line: no allocation per line.
    buf: Vec<u8>,
}

impl LineReceiver for Upper {
    fn line_received(&mut self, lines: &mut LineControl<'_>, line: &[u8]) {
        self.buf.clear();
        self.buf.extend(line.iter().map(u8::to_ascii_uppercase));
        self.buf.push(b'\n');
        // Copied into the write buffer; written out with the others when this read's
        // lines are done.
        lines.transport().write(&self.buf);
    }

    fn line_length_exceeded(&mut self, lines: &mut LineControl<'_>, _prefix: &[u8]) {
        log::error!("a line is longer than {MAX_LINE} bytes");
        self.ok.set(false);
        lines.transport().lose_connection();
    }

    fn eof_received(&mut self, lines: &mut LineControl<'_>) -> bool {
        // The last line, without its (missing) newline.
        let rest = lines.clear_line_buffer();
        if !rest.is_empty() {
            lines.transport().write(&rest.to_ascii_uppercase());
        }
        false // flush, then close
    }

    // Flow control: stop reading while standard output is behind.
    fn pause_writing(&mut self, lines: &mut LineControl<'_>) {
        lines.transport().pause_reading();
    }

    fn resume_writing(&mut self, lines: &mut LineControl<'_>) {
        lines.transport().resume_reading();
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        if !reason.is_clean() {
            log::error!("{reason}");
            self.ok.set(false);
        }
        let _ = Reactor::current().stop();
    }
}

fn main() {
    program::init_logging();
    if std::env::args().len() > 1 {
        program::usage_error("takes no arguments; reads standard input");
    }
    let reactor = Reactor::current();
    let ok = Rc::new(Cell::new(true));
    let protocol = Lines::new(Upper {
        ok: ok.clone(),
        buf: Vec::new(),
    })
    .with_delimiter(b"\n")
    .with_max_length(MAX_LINE);
    if let Err(err) = reactor.standard_io(protocol) {
        program::fail(&err.to_string());
    }
    if let Err(err) = reactor.run() {
        program::fail(&err.to_string());
    }
    std::process::exit(if ok.get() { 0 } else { 1 });
}
