//! A chat server in one page (the guide's second chapter): the first line a client sends is
//! its name, every later line goes to everyone else.
//!
//! ```text
//! cargo run --example mini_chat                   # listens on tcp:8000
//! nc 127.0.0.1 8000                               # in two or more terminals
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use torsion::prelude::*;

/// What the connections share: who is in the room, and how to send each of them a line.
#[derive(Default)]
struct Room {
    members: BTreeMap<String, LineSender>,
}

impl Room {
    /// Sends `line` to everyone but `from`.
    fn broadcast(&self, from: &str, line: &str) {
        for (name, member) in &self.members {
            if name != from {
                member.send_line(line.as_bytes());
            }
        }
    }
}

/// One connection: its own state (the name, once given) and a handle on the room.
struct Chatter {
    room: Rc<RefCell<Room>>,
    name: Option<String>,
}

impl LineReceiver for Chatter {
    fn connection_made(&mut self, lines: &mut LineControl<'_>) {
        lines.send_line(b"What is your name?");
    }

    fn line_received(&mut self, lines: &mut LineControl<'_>, line: &[u8]) {
        let line = String::from_utf8_lossy(line).into_owned();
        let Some(name) = &self.name else {
            let mut room = self.room.borrow_mut();
            if line.is_empty() || room.members.contains_key(&line) {
                lines.send_line(b"That name is taken, try another.");
                return;
            }
            room.broadcast(&line, &format!("* {line} has joined"));
            room.members.insert(line.clone(), lines.sender());
            lines.send_line(format!("Welcome, {line}!").as_bytes());
            self.name = Some(line);
            return;
        };
        self.room
            .borrow()
            .broadcast(name, &format!("<{name}> {line}"));
    }

    fn connection_lost(&mut self, _reason: &ConnectionLost) {
        if let Some(name) = self.name.take() {
            let mut room = self.room.borrow_mut();
            room.members.remove(&name);
            room.broadcast(&name, &format!("* {name} has left"));
        }
    }
}

fn main() {
    let room = Rc::new(RefCell::new(Room::default()));
    let factory = factory_fn(move |_| {
        let chatter = Chatter {
            room: Rc::clone(&room),
            name: None,
        };
        // Lines end in "\n" (a "\r" before it is dropped), as `nc` and `telnet` send them.
        Lines::new(chatter)
            .with_delimiter(b"\n")
            .with_strip_cr(true)
    });
    torsion::program::serve("tcp:8000", factory);
}
