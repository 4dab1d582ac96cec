//! The chat server's line handling (examples/chat_server.rs, included as it is), with up
//! to four users who connect, send arbitrary bytes in arbitrary pieces (garbage, long
//! lines, names, commands), and leave. No input panics it; every callback leaves whole
//! lines ending in `\r\n` on the wire, none longer than a line can be; a user told
//! "Line too long." or "Bye!" is disconnected; and `/who` always lists exactly the users
//! who are registered and still connected.
#![no_main]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use torsion_reactor::testing::StringTransport;
use torsion_reactor::{ConnectionLost, Protocol};

#[allow(dead_code)] // its main and policies are not used here
#[path = "../../examples/chat_server.rs"]
mod chat;

struct User {
    proto: Box<dyn Protocol>,
    wire: StringTransport,
    name: Option<Vec<u8>>,
}

/// Lines the fuzzer is likely to need, to reach past the name prompt quickly.
const WORDS: &[&[u8]] = &[
    b"alice\n",
    b"bob\r\n",
    b"/who\n",
    b"/nick carol\n",
    b"/nick alice\n",
    b"/quit\n",
    b"hello there\n",
    b"\n",
    b"a b\n",
];

fn check_output(users: &mut [Option<User>], names: &BTreeSet<Vec<u8>>) {
    for user in users.iter_mut().flatten() {
        let out = user.wire.take_written();
        if out.is_empty() {
            continue;
        }
        assert!(out.ends_with(b"\r\n"), "whole lines only: {out:?}");
        for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line = line.strip_suffix(b"\r").expect("every line ends in \\r\\n");
            assert!(line.len() <= 4096 + 64 + 40 * 4, "a line no longer than it can be");
            if let Some(name) = line
                .strip_prefix(b"Welcome, ")
                .and_then(|l| l.strip_suffix(b"!"))
            {
                user.name = Some(name.to_vec());
            } else if let Some(new) = line.strip_prefix(b"* You are now ") {
                user.name = Some(new.to_vec());
            } else if let Some(list) = line.strip_prefix(b"* Online: ") {
                let listed: BTreeSet<Vec<u8>> = list
                    .split(|b| *b == b',')
                    .map(|n| n.strip_prefix(b" ").unwrap_or(n).to_vec())
                    .filter(|n| !n.is_empty())
                    .collect();
                let mut expected = names.clone();
                // The user's own name, if it was just registered in this callback.
                if let Some(mine) = &user.name {
                    expected.insert(mine.clone());
                }
                assert_eq!(listed, expected, "/who lists exactly who is online");
            } else if line == b"Line too long." || line == b"Bye!" {
                assert!(
                    user.wire.lose_connection_called() || user.wire.aborted(),
                    "told it is over, and disconnected"
                );
            }
        }
    }
}

/// Users whose connection the protocol closed hear `connection_lost`, as the reactor
/// would deliver it.
fn reap(users: &mut [Option<User>]) {
    for slot in users.iter_mut() {
        let closed = slot
            .as_ref()
            .is_some_and(|u| u.wire.lose_connection_called() || u.wire.aborted());
        if closed {
            let mut user = slot.take().expect("checked");
            user.proto.connection_lost(&ConnectionLost::Done);
        }
    }
}

fn online(users: &[Option<User>]) -> BTreeSet<Vec<u8>> {
    users.iter().flatten().filter_map(|u| u.name.clone()).collect()
}

fuzz_target!(|data: &[u8]| {
    let room = Rc::new(RefCell::new(chat::Room::default()));
    let mut users: Vec<Option<User>> = (0..4).map(|_| None).collect();
    let mut input = data;
    while let [op, who, rest @ ..] = input {
        input = rest;
        let i = (*who as usize) % users.len();
        match op % 4 {
            0 if users[i].is_none() => {
                let wire = StringTransport::new();
                let mut proto: Box<dyn Protocol> = Box::new(chat::chat_user(&room));
                proto.connection_made(&wire.transport());
                users[i] = Some(User {
                    proto,
                    wire,
                    name: None,
                });
            }
            1 => {
                let [len, rest @ ..] = input else { break };
                let n = (*len as usize).min(rest.len());
                let (piece, rest) = rest.split_at(n);
                input = rest;
                if let Some(user) = users[i].as_mut() {
                    user.proto.data_received(&user.wire.transport(), piece);
                }
            }
            2 => {
                if let Some(mut user) = users[i].take() {
                    user.proto.connection_lost(&ConnectionLost::Done);
                }
            }
            _ => {
                let word = WORDS[(*who as usize / 4) % WORDS.len()];
                if let Some(user) = users[i].as_mut() {
                    if word == b"\n" && input.first().is_some_and(|b| b % 7 == 0) {
                        // An over-long line, now and then.
                        let long = vec![b'x'; 5000];
                        user.proto.data_received(&user.wire.transport(), &long);
                    }
                    user.proto.data_received(&user.wire.transport(), word);
                }
            }
        }
        // Names as they were before this step's output is read: `/who` answers list the
        // users registered so far (the asker's own new name is added in check_output).
        let before = online(&users);
        check_output(&mut users, &before);
        reap(&mut users);
    }
});
