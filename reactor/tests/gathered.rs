//! The rules of gathered writes, over real sockets: small writes made in a connection's
//! own callback wait for it to return (and count toward the write buffer's marks while
//! they wait); a large write goes to the socket at once, after what was gathered; the
//! order of `write`, `write_bytes` and `write_vectored` is kept whatever path each takes.
//! (The system-call count of gathering is `coalescing.rs`.)

mod common;

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;

use bytes::Bytes;
use common::{PATIENCE, listen, reactor};
use torsion_reactor::{Protocol, Transport, factory_fn};

/// What a callback saw of its own transport right after writing.
#[derive(Default)]
struct Observed {
    buffered: Cell<Option<usize>>,
    paused: Cell<Option<bool>>,
    pauses: Cell<u32>,
    resumes: Cell<u32>,
}

/// On any data: writes `script`'s pieces, then records what its transport says.
struct Writer {
    script: fn(&Transport),
    high_mark: Option<usize>,
    seen: Rc<Observed>,
}

impl Protocol for Writer {
    fn connection_made(&mut self, t: &Transport) {
        if let Some(high) = self.high_mark {
            t.set_write_buffer_limits(high, high / 10);
        }
    }
    fn data_received(&mut self, t: &Transport, _data: &[u8]) {
        if self.seen.buffered.get().is_some() {
            return; // once
        }
        (self.script)(t);
        self.seen.buffered.set(Some(t.buffer_size()));
        self.seen.paused.set(Some(t.is_writing_paused()));
    }
    fn pause_writing(&mut self, _t: &Transport) {
        self.seen.pauses.set(self.seen.pauses.get() + 1);
    }
    fn resume_writing(&mut self, _t: &Transport) {
        self.seen.resumes.set(self.seen.resumes.get() + 1);
    }
}

/// Serves one connection with `script`, sends it a byte, and returns what came back
/// (`expect` bytes) and what the callback observed.
fn run(script: fn(&Transport), high_mark: Option<usize>, expect: usize) -> (Vec<u8>, Rc<Observed>) {
    // The test looks at what the kernel took during the callback: an injected EAGAIN
    // would take nothing, which is another case (a blocked connection queues).
    #[cfg(feature = "fault-injection")]
    let _exact = torsion_reactor::testing::faults::suspend();
    let r = reactor();
    let seen: Rc<Observed> = Rc::default();
    let s = Rc::clone(&seen);
    let (_port, addr) = listen(
        &r,
        factory_fn(move |_| Writer {
            script,
            high_mark,
            seen: Rc::clone(&s),
        }),
    );
    let client = std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).expect("connects");
        c.set_read_timeout(Some(PATIENCE)).expect("a timeout");
        c.write_all(b"go").expect("writes");
        let mut got = vec![0u8; expect];
        c.read_exact(&mut got).map(|()| got)
    });
    r.run_until(PATIENCE, || client.is_finished())
        .expect("the client gets everything");
    let got = client
        .join()
        .expect("the client thread")
        .expect("every byte");
    let done = Rc::clone(&seen);
    r.run_until(PATIENCE, || done.pauses.get() == done.resumes.get())
        .expect("every pause is followed by a resume");
    (got, seen)
}

const BIG: usize = 256 * 1024;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_large_write_in_a_callback_goes_to_the_socket_at_once_after_what_was_gathered() {
    let (got, seen) = run(
        |t| {
            t.write(b"first ");
            t.write(&pattern(BIG));
        },
        None,
        6 + BIG,
    );
    // Had it waited for the callback to return, all of it would still be buffered.
    let buffered = seen.buffered.get().expect("the callback ran");
    assert!(
        buffered < 6 + BIG,
        "{buffered} bytes still buffered in the callback"
    );
    assert_eq!(&got[..6], b"first ");
    assert!(
        got[6..] == pattern(BIG)[..],
        "in order, after the gathered bytes"
    );
}

#[test]
fn gathered_bytes_count_toward_the_marks_before_they_are_sent() {
    let (got, seen) = run(
        |t| {
            for _ in 0..10 {
                t.write(&[b'x'; 200]);
            }
        },
        Some(1000),
        2000,
    );
    // Small writes: all gathered (none sent yet), and above the 1,000-byte high mark.
    assert_eq!(seen.buffered.get(), Some(2000));
    assert_eq!(seen.paused.get(), Some(true), "paused by gathered bytes");
    assert_eq!(got, vec![b'x'; 2000]);
    assert_eq!(seen.pauses.get(), seen.resumes.get());
}

#[test]
fn write_write_bytes_and_write_vectored_keep_their_order_on_every_path() {
    let (got, _seen) = run(
        |t| {
            t.write(b"1:small ");
            t.write_bytes(Bytes::from_static(b"2:bytes "));
            t.write_vectored(&[b"3:", b"vectored "]);
            t.write_bytes(Bytes::from(vec![b'4'; 10_000])); // large: sent at once
            t.write(b" 5:small again ");
            t.write_vectored(&[&[b'6'; 5000], b" 7:end"]); // large again
        },
        None,
        8 + 8 + 11 + 10_000 + 15 + 5000 + 6,
    );
    let mut want = Vec::new();
    want.extend_from_slice(b"1:small 2:bytes 3:vectored ");
    want.extend_from_slice(&[b'4'; 10_000]);
    want.extend_from_slice(b" 5:small again ");
    want.extend_from_slice(&[b'6'; 5000]);
    want.extend_from_slice(b" 7:end");
    assert!(got == want, "the bytes in the order they were written");
}
