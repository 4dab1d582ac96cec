//! A line-based chat server.
//!
//! ```text
//! cargo run --release --example chat_server            # listens on tcp:8000
//! nc 127.0.0.1 8000                                    # in two or more terminals
//! ```
//!
//! The first line a client sends is its name (1–32 ASCII letters, digits, `_` or `-`);
//! every later line goes to everyone else as `<NAME> TEXT`. Commands: `/who`, `/nick NEW`,
//! `/quit`. Lines end in `\n` (a trailing `\r` is dropped); the server ends its lines with
//! `\r\n`. A line over 4,096 bytes closes the connection, and a client that stops reading
//! is disconnected once 1 MiB is queued for it, so no client can grow the server's memory.

mod support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use torsion::reactor::{Address, ConnectionLost, Factory, Protocol, Reactor, Transport};

/// Longest line accepted, not counting its ending.
const MAX_LINE: usize = 4096;
/// Most bytes queued for one client before it is disconnected as not reading.
const MAX_QUEUED: usize = 1024 * 1024;

/// Who is online, by name (sorted by bytes, as `/who` lists them).
#[derive(Default)]
struct Room {
    users: BTreeMap<Vec<u8>, Transport>,
}

impl Room {
    /// Sends `line` to everyone but `except`; disconnects anyone it cannot keep up with.
    fn broadcast(&self, except: Option<&[u8]>, line: &[u8]) {
        for (name, transport) in &self.users {
            if Some(name.as_slice()) == except {
                continue;
            }
            send(transport, line);
            if transport.buffer_size() > MAX_QUEUED {
                log::warn!(
                    "{} ({}) is not reading; {} bytes queued; disconnecting",
                    String::from_utf8_lossy(name),
                    transport.peer_addr(),
                    transport.buffer_size()
                );
                transport.abort_connection();
            }
        }
    }
}

fn send(transport: &Transport, line: &[u8]) {
    let _ = transport.write_vectored(&[line, b"\r\n"]);
}

fn valid_name(name: &[u8]) -> bool {
    (1..=32).contains(&name.len())
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

struct ChatUser {
    room: Rc<RefCell<Room>>,
    name: Option<Vec<u8>>,
    pending: Vec<u8>,
}

impl ChatUser {
    fn line_received(&mut self, transport: &Transport, line: &[u8]) {
        let Some(name) = self.name.clone() else {
            if let Some(name) = self.claim(transport, line) {
                send(transport, &[b"Welcome, ", &name[..], b"!"].concat());
                let joined = [b"* ", &name[..], b" has joined"].concat();
                self.room.borrow().broadcast(Some(&name), &joined);
                self.name = Some(name);
            }
            return;
        };
        if line == b"/quit" {
            send(transport, b"Bye!");
            transport.lose_connection();
        } else if line == b"/who" {
            let room = self.room.borrow();
            let names: Vec<&[u8]> = room.users.keys().map(Vec::as_slice).collect();
            send(
                transport,
                &[b"* Online: ", &names.join(&b", "[..])[..]].concat(),
            );
        } else if let Some(new) = line.strip_prefix(b"/nick ") {
            if let Some(new) = self.claim(transport, new) {
                self.room.borrow_mut().users.remove(&name);
                send(transport, &[b"* You are now ", &new[..]].concat());
                let notice = [b"* ", &name[..], b" is now ", &new[..]].concat();
                self.room.borrow().broadcast(Some(&new), &notice);
                self.name = Some(new);
            }
        } else {
            let message = [b"<", &name[..], b"> ", line].concat();
            self.room.borrow().broadcast(Some(&name), &message);
        }
    }

    /// Registers `name` for this user if it is valid and free; otherwise says why.
    fn claim(&self, transport: &Transport, name: &[u8]) -> Option<Vec<u8>> {
        if !valid_name(name) {
            send(transport, b"Invalid name, try again.");
            return None;
        }
        let mut room = self.room.borrow_mut();
        if room.users.contains_key(name) {
            drop(room);
            send(transport, b"Name taken, try again.");
            return None;
        }
        room.users.insert(name.to_vec(), transport.clone());
        Some(name.to_vec())
    }

    fn too_long(&mut self, transport: &Transport) {
        self.pending.clear();
        send(transport, b"Line too long.");
        transport.lose_connection();
    }
}

impl Protocol for ChatUser {
    fn connection_made(&mut self, transport: &Transport) {
        send(transport, b"What is your name?");
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(pos);
            rest = &tail[1..];
            let line: Vec<u8>;
            let mut full: &[u8] = if self.pending.is_empty() {
                head
            } else {
                self.pending.extend_from_slice(head);
                line = std::mem::take(&mut self.pending);
                &line
            };
            if let Some(stripped) = full.strip_suffix(b"\r") {
                full = stripped;
            }
            if full.len() > MAX_LINE {
                return self.too_long(transport);
            }
            self.line_received(transport, full);
            if transport.is_closing() {
                return;
            }
        }
        self.pending.extend_from_slice(rest);
        // A partial line may end in the `\r` of its `\r\n`, which does not count.
        let limit = if self.pending.last() == Some(&b'\r') {
            MAX_LINE + 1
        } else {
            MAX_LINE
        };
        if self.pending.len() > limit {
            self.too_long(transport);
        }
    }

    fn connection_lost(&mut self, _reason: &ConnectionLost) {
        if let Some(name) = self.name.take() {
            let mut room = self.room.borrow_mut();
            room.users.remove(&name);
            room.broadcast(None, &[b"* ", &name[..], b" has left"].concat());
        }
    }
}

struct Chat {
    room: Rc<RefCell<Room>>,
}

impl Factory for Chat {
    type Protocol = ChatUser;
    fn build_protocol(&self, _peer: &Address) -> Option<ChatUser> {
        Some(ChatUser {
            room: Rc::clone(&self.room),
            name: None,
            pending: Vec::new(),
        })
    }
}

fn main() {
    support::init_logging();
    let endpoint = support::endpoint_arg("tcp:8000", "[ENDPOINT]   (default tcp:8000)");
    let reactor = Reactor::current();
    let chat = Chat {
        room: Rc::new(RefCell::new(Room::default())),
    };
    support::listen(&reactor, &endpoint, chat);
    support::run(&reactor);
}
