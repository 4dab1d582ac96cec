//! A line-based chat server, built on `LineReceiver` and the policies.
//!
//! ```text
//! cargo run --release --example chat_server            # listens on tcp:8000
//! nc 127.0.0.1 8000                                    # in two or more terminals
//! cargo run --release --example chat_server -- ssl:8443:privateKey=key.pem:certKey=cert.pem
//! openssl s_client -connect 127.0.0.1:8443 -quiet       # TLS: the same chat, encrypted
//! ```
//!
//! The first line a client sends is its name (1–32 ASCII letters, digits, `_` or `-`);
//! every later line goes to everyone else as `<NAME> TEXT`. Commands: `/who`, `/nick NEW`,
//! `/quit`. Lines end in `\n` (a trailing `\r` is dropped); the server ends its lines with
//! `\r\n`. A line over 4,096 bytes closes the connection.
//!
//! No client can grow the server's memory by not reading. While more than 64 KiB (the
//! write buffer's high-water mark) is queued for a client, the `Lines` adapter stops
//! reading and answering its lines, and holds the ones already read (at most one read's
//! worth) until the client has read its replies; so a client that sends millions of
//! lines and never reads costs the server the mark plus one reply plus one read. What
//! others send it (messages, joins) is not held back: a client with more than 1 MiB
//! queued is disconnected as not reading, and that limit is checked after every line the
//! server sends anyone, replies included.
//!
//! Policies: a connection with no traffic either way for 10 minutes is told
//! `Idle timeout.` and closed (a user who only listens to an active room is not idle), and
//! one IP address may hold at most 100 connections at once (the next are closed at once).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use torsion::program;
use torsion::protocols::policy::{FactoryExt, LimitConnectionsByPeer, TimeoutPolicy};
use torsion::protocols::{LineControl, LineEncoder, LineReceiver, LineSender, Lines};
use torsion::reactor::{ConnectionLost, Reactor, Transport, factory_fn};

/// Longest line accepted, not counting its ending.
const MAX_LINE: usize = 4096;
/// Most bytes queued for one client before it is disconnected as not reading.
const MAX_QUEUED: usize = 1024 * 1024;
/// A connection with no traffic either way for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Most connections from one IP address at once.
const MAX_PER_PEER: usize = 100;

/// Sends `line` to one client, then applies the not-reading limit to it.
fn send(to: &LineSender, line: &[u8]) {
    to.send_line(line);
    check_reading(to.transport());
}

/// Answers the client whose line is being handled, then applies the limit to it.
fn reply(lines: &LineControl<'_>, line: &[u8]) {
    lines.send_line(line);
    check_reading(lines.transport());
}

/// Disconnects a client with more than `MAX_QUEUED` bytes waiting for it.
fn check_reading(transport: &Transport) {
    let queued = transport.buffer_size();
    if queued > MAX_QUEUED {
        log::warn!(
            "{} is not reading; {queued} bytes queued; disconnecting",
            transport.peer_addr()
        );
        transport.abort_connection();
    }
}

// `Room`, `ChatUser` and `chat_user` are `pub(crate)` for the fuzz target that drives
// the line handling without sockets (fuzz/fuzz_targets/chat_lines.rs includes this file).

/// Who is online, by name (sorted by bytes, as `/who` lists them).
#[derive(Default)]
pub(crate) struct Room {
    users: BTreeMap<Vec<u8>, LineSender>,
}

impl Room {
    /// Sends `line` to everyone but `except`; disconnects anyone it cannot keep up with.
    fn broadcast(&self, except: Option<&[u8]>, line: &[u8]) {
        for (name, user) in &self.users {
            if Some(name.as_slice()) != except {
                send(user, line);
            }
        }
    }
}

fn valid_name(name: &[u8]) -> bool {
    (1..=32).contains(&name.len())
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

pub(crate) struct ChatUser {
    room: Rc<RefCell<Room>>,
    name: Option<Vec<u8>>,
}

impl ChatUser {
    /// Registers `name` for this user if it is valid and free; otherwise says why.
    fn claim(&self, lines: &LineControl<'_>, name: &[u8]) -> Option<Vec<u8>> {
        if !valid_name(name) {
            reply(lines, b"Invalid name, try again.");
            return None;
        }
        let mut room = self.room.borrow_mut();
        if room.users.contains_key(name) {
            drop(room);
            reply(lines, b"Name taken, try again.");
            return None;
        }
        room.users.insert(name.to_vec(), lines.sender());
        Some(name.to_vec())
    }
}

impl LineReceiver for ChatUser {
    fn connection_made(&mut self, lines: &mut LineControl<'_>) {
        reply(lines, b"What is your name?");
    }

    fn line_received(&mut self, lines: &mut LineControl<'_>, line: &[u8]) {
        let Some(name) = self.name.clone() else {
            if let Some(name) = self.claim(lines, line) {
                reply(lines, &[b"Welcome, ", &name[..], b"!"].concat());
                let joined = [b"* ", &name[..], b" has joined"].concat();
                self.room.borrow().broadcast(Some(&name), &joined);
                self.name = Some(name);
            }
            return;
        };
        if line == b"/quit" {
            reply(lines, b"Bye!");
            lines.transport().lose_connection();
        } else if line == b"/who" {
            let room = self.room.borrow();
            let names: Vec<&[u8]> = room.users.keys().map(Vec::as_slice).collect();
            reply(
                lines,
                &[b"* Online: ", &names.join(&b", "[..])[..]].concat(),
            );
        } else if let Some(new) = line.strip_prefix(b"/nick ") {
            if let Some(new) = self.claim(lines, new) {
                self.room.borrow_mut().users.remove(&name);
                reply(lines, &[b"* You are now ", &new[..]].concat());
                let notice = [b"* ", &name[..], b" is now ", &new[..]].concat();
                self.room.borrow().broadcast(Some(&new), &notice);
                self.name = Some(new);
            }
        } else {
            let message = [b"<", &name[..], b"> ", line].concat();
            self.room.borrow().broadcast(Some(&name), &message);
        }
    }

    fn line_length_exceeded(&mut self, lines: &mut LineControl<'_>, _prefix: &[u8]) {
        reply(lines, b"Line too long.");
        lines.transport().lose_connection();
    }

    fn connection_lost(&mut self, _reason: &ConnectionLost) {
        if let Some(name) = self.name.take() {
            let mut room = self.room.borrow_mut();
            room.users.remove(&name);
            room.broadcast(None, &[b"* ", &name[..], b" has left"].concat());
        }
    }
}

/// The protocol for one connection: lines end in `\n` or `\r\n`, at most `MAX_LINE`
/// bytes; the server's lines end in `\r\n`, whatever their length.
pub(crate) fn chat_user(room: &Rc<RefCell<Room>>) -> Lines<ChatUser> {
    Lines::new(ChatUser {
        room: Rc::clone(room),
        name: None,
    })
    .with_delimiter(b"\n")
    .with_strip_cr(true)
    .with_max_length(MAX_LINE)
    .with_encoder(
        LineEncoder::new()
            .with_delimiter(b"\n")
            .with_strip_cr(true)
            .with_max_length(usize::MAX),
    )
}

fn main() {
    program::init_logging();
    let endpoint = program::endpoint_arg("tcp:8000", "[ENDPOINT]   (default tcp:8000)");
    let reactor = Reactor::current();
    let scheduler = reactor.scheduler();
    let room = Rc::new(RefCell::new(Room::default()));
    let chat = factory_fn(move |_| chat_user(&room))
        .with_policy(TimeoutPolicy::new(scheduler, IDLE_TIMEOUT).on_timeout(
            |_: &mut Lines<ChatUser>, transport: &Transport| {
                transport.write(b"Idle timeout.\r\n");
            },
        ))
        .with_policy(LimitConnectionsByPeer::new(MAX_PER_PEER));
    program::listen(&reactor, &endpoint, chat);
    program::run(&reactor);
}
