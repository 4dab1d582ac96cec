//! Connections are registered edge-triggered: the kernel reports a socket once when data
//! arrives, so every way a connection stops reading before the socket ran dry must bring it
//! back by itself. Each test leaves bytes (or the end of file) in the socket with no further
//! event to announce them, over real loopback sockets.

mod common;

use std::cell::RefCell;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use common::{PATIENCE, listen, reactor};
use torsion_reactor::{Protocol, Reactor, Transport, factory_fn};

#[derive(Default)]
struct Seen {
    bytes: usize,
    eof: bool,
    reads: usize,
}

/// Pauses reading after its first read and resumes 50 ms later (from a timer): what the
/// peer sent meanwhile is already in the socket, and no new event will say so.
struct PauseOnce(Rc<RefCell<Seen>>);

impl Protocol for PauseOnce {
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        let mut seen = self.0.borrow_mut();
        seen.bytes += data.len();
        seen.reads += 1;
        if seen.reads == 1 {
            t.pause_reading();
            let t = t.clone();
            Reactor::current().call_later(Duration::from_millis(50), move || t.resume_reading());
        }
    }

    fn eof_received(&mut self, _: &Transport) -> bool {
        self.0.borrow_mut().eof = true;
        false
    }
}

/// Counts what arrives.
struct Count(Rc<RefCell<Seen>>);

impl Protocol for Count {
    fn data_received(&mut self, _: &Transport, data: &[u8]) {
        let mut seen = self.0.borrow_mut();
        seen.bytes += data.len();
        seen.reads += 1;
    }

    fn eof_received(&mut self, _: &Transport) -> bool {
        self.0.borrow_mut().eof = true;
        false
    }
}

#[test]
fn bytes_and_end_of_file_sent_while_paused_arrive_after_resume() {
    let r = reactor();
    let seen = Rc::new(RefCell::new(Seen::default()));
    let s = seen.clone();
    let (_port, addr) = listen(&r, factory_fn(move |_| PauseOnce(s.clone())));
    let mut c = TcpStream::connect(addr).expect("connects");
    c.write_all(b"first").expect("writes");
    r.run_until(PATIENCE, || seen.borrow().reads == 1)
        .expect("the first read");
    // While the server is paused: more bytes, then the end of file, all at once.
    c.write_all(b"second and third").expect("writes");
    c.shutdown(Shutdown::Write).expect("half-closes");
    r.run_until(PATIENCE, || seen.borrow().eof)
        .expect("after resuming, the rest and the end of file are read");
    assert_eq!(seen.borrow().bytes, "firstsecond and third".len());
}

#[test]
fn data_and_end_of_file_in_one_event_are_both_seen() {
    let r = reactor();
    let seen = Rc::new(RefCell::new(Seen::default()));
    let s = seen.clone();
    let (_port, addr) = listen(&r, factory_fn(move |_| Count(s.clone())));
    let mut c = TcpStream::connect(addr).expect("connects");
    // Both are in the socket before the server looks: one short read would return the
    // bytes, and the end of file must not be left unread.
    c.write_all(b"request").expect("writes");
    c.shutdown(Shutdown::Write).expect("half-closes");
    r.run_until(PATIENCE, || seen.borrow().eof)
        .expect("the end of file is seen");
    assert_eq!(seen.borrow().bytes, 7);
}

#[test]
fn a_burst_larger_than_the_read_budget_is_read_whole() {
    let r = reactor();
    let seen = Rc::new(RefCell::new(Seen::default()));
    let s = seen.clone();
    let (_port, addr) = listen(&r, factory_fn(move |_| Count(s.clone())));
    const TOTAL: usize = 2 * 1024 * 1024;
    // Written from another thread (the socket buffers fill while this thread runs the
    // reactor), then nothing more: the reads past the per-event budget come back on
    // their own.
    let writer = std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).expect("connects");
        c.write_all(&vec![7u8; TOTAL]).expect("writes");
        c
    });
    r.run_until(PATIENCE, || seen.borrow().bytes == TOTAL)
        .expect("every byte is read");
    let c = writer.join().expect("the writer finishes");
    drop(c);
    r.run_until(PATIENCE, || seen.borrow().eof)
        .expect("then the end of file");
}
