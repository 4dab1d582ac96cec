//! Gathered writes: the writes a callback makes go out in one `writev` per connection.
//!
//! Counted with `/proc/self/io`'s `syscw` (write-family system calls of this process:
//! `write`/`writev`, which the reactor uses, and not `send`, which std's `TcpStream`
//! uses), so this file holds one test: tests running in parallel would add their writes.

mod common;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;

use common::{PATIENCE, listen, reactor};
use torsion_reactor::{Protocol, Transport, factory_fn};

fn write_syscalls() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io is readable");
    io.lines()
        .find_map(|l| l.strip_prefix("syscw: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("a syscw line")
}

/// Answers each line with `ok LINE\n`, written in three pieces; on `all`, also writes to
/// every other connection it knows.
struct Replier {
    others: Rc<RefCell<Vec<Transport>>>,
    handled: Rc<RefCell<usize>>,
}

impl Protocol for Replier {
    fn connection_made(&mut self, t: &Transport) {
        self.others.borrow_mut().push(t.clone());
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            t.write(b"ok ");
            t.write(line);
            t.write(b"\n");
            if line == b"all" {
                for other in self
                    .others
                    .borrow()
                    .iter()
                    .filter(|o| !o.same_connection(t))
                {
                    other.write(b"news ");
                    other.write(b"for you\n");
                }
            }
            *self.handled.borrow_mut() += 1;
        }
    }
}

fn read_exactly(c: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    c.read_exact(&mut buf).expect("the expected bytes arrive");
    buf
}

#[test]
fn a_callbacks_writes_cost_one_writev_per_connection() {
    // Injected faults (short writes, EAGAIN) change the count of system calls, and this
    // test drives the loop one iteration at a time, assuming the kernel takes each write.
    #[cfg(feature = "fault-injection")]
    let _exact = torsion_reactor::testing::faults::suspend();
    let r = reactor();
    let others: Rc<RefCell<Vec<Transport>>> = Rc::default();
    let handled = Rc::new(RefCell::new(0));
    let (o, h) = (others.clone(), handled.clone());
    let (_port, addr) = listen(
        &r,
        factory_fn(move |_| Replier {
            others: o.clone(),
            handled: h.clone(),
        }),
    );
    let mut clients: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for c in &clients {
        c.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    r.run_until(PATIENCE, || others.borrow().len() == 4)
        .expect("all four accepted");

    // Sixteen pipelined requests in one read: 48 writes, one writev.
    let requests: String = (0..16).map(|i| format!("req{i:02}\n")).collect();
    clients[0].write_all(requests.as_bytes()).unwrap();
    let before = write_syscalls();
    r.run_until(PATIENCE, || *handled.borrow() == 16)
        .expect("all sixteen handled");
    let replies = read_exactly(&mut clients[0], 16 * "ok req00\n".len());
    assert_eq!(write_syscalls() - before, 1, "sixteen replies, one writev");
    let want: String = (0..16).map(|i| format!("ok req{i:02}\n")).collect();
    assert_eq!(String::from_utf8(replies).unwrap(), want, "in order");

    // A broadcast from one callback: one writev per connection written to.
    clients[1].write_all(b"all\n").unwrap();
    let before = write_syscalls();
    r.run_until(PATIENCE, || *handled.borrow() == 17)
        .expect("the broadcast request is handled");
    // The others' writes go out in the gathered-writes phase of the next iteration.
    r.iterate(std::time::Duration::ZERO).unwrap();
    assert_eq!(read_exactly(&mut clients[1], 7), b"ok all\n");
    for c in [0, 2, 3] {
        assert_eq!(read_exactly(&mut clients[c], 13), b"news for you\n");
    }
    assert_eq!(
        write_syscalls() - before,
        4,
        "one writev for each of the four connections"
    );

    // Outside the loop a write goes out at once: no callback is running to gather it.
    let t = others.borrow()[2].clone();
    let before = write_syscalls();
    t.write(b"direct\n");
    assert_eq!(write_syscalls() - before, 1);
    assert_eq!(read_exactly(&mut clients[2], 7), b"direct\n");
}
