//! A key-value store with a line protocol and binary values (the guide's chapter on
//! framing): commands are lines; a value is sent as raw bytes after its command, its
//! length given in the command, so it may hold any byte, line endings included.
//!
//! ```text
//! SET KEY LENGTH   then LENGTH bytes         -> STORED
//! GET KEY                                    -> VALUE LENGTH, the bytes, a line end; or NOT FOUND
//! QUIT                                       -> BYE, and the server closes
//! ```
//!
//! ```text
//! cargo run --example kv_server                   # listens on tcp:8000
//! nc 127.0.0.1 8000
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use torsion::prelude::*;

/// The largest value accepted.
const MAX_VALUE: usize = 1024 * 1024;

type Store = Rc<RefCell<HashMap<String, Vec<u8>>>>;

/// A value being received: its key, its length, and the bytes so far.
struct Incoming {
    key: String,
    length: usize,
    bytes: Vec<u8>,
}

/// One client.
struct Client {
    store: Store,
    incoming: Option<Incoming>,
}

impl Client {
    fn store_value(&mut self, lines: &LineControl<'_>) {
        if let Some(Incoming { key, bytes, .. }) = self.incoming.take() {
            self.store.borrow_mut().insert(key, bytes);
            lines.send_line(b"STORED");
        }
    }
}

impl LineReceiver for Client {
    fn line_received(&mut self, lines: &mut LineControl<'_>, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {} // an empty line (the line end typed after a value)
            ["SET", key, length] => match length.parse::<usize>() {
                Ok(length) if length <= MAX_VALUE => {
                    self.incoming = Some(Incoming {
                        key: key.to_string(),
                        length,
                        bytes: Vec::with_capacity(length),
                    });
                    if length == 0 {
                        self.store_value(lines);
                    } else {
                        // The next `length` bytes are the value, whatever they are; then
                        // lines again.
                        lines.set_raw_mode_for(length);
                    }
                }
                _ => {
                    lines.send_line(b"ERROR the length must be 0 to 1048576");
                }
            },
            ["GET", key] => match self.store.borrow().get(*key) {
                Some(value) => {
                    lines.send_line(format!("VALUE {}", value.len()).as_bytes());
                    lines.transport().write_vectored(&[value, b"\r\n"]);
                }
                None => {
                    lines.send_line(b"NOT FOUND");
                }
            },
            ["QUIT"] => {
                lines.send_line(b"BYE");
                lines.transport().lose_connection();
            }
            _ => {
                lines.send_line(b"ERROR unknown command");
            }
        }
    }

    fn raw_data_received(&mut self, lines: &mut LineControl<'_>, data: &[u8]) {
        // The value may arrive in several pieces.
        let Some(incoming) = &mut self.incoming else {
            return;
        };
        incoming.bytes.extend_from_slice(data);
        if incoming.bytes.len() == incoming.length {
            self.store_value(lines);
        }
    }
}

fn main() {
    let store = Store::default();
    let factory = factory_fn(move |_| {
        let client = Client {
            store: Rc::clone(&store),
            incoming: None,
        };
        // Commands end in "\n" or "\r\n"; the server's lines end in "\r\n".
        Lines::new(client).with_delimiter(b"\n").with_strip_cr(true)
    });
    torsion::program::serve("tcp:8000", factory);
}
