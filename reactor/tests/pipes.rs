//! Pipe transports over real pipes, FIFOs, files and /dev/null: read ends, write ends,
//! two descriptors as one transport; end of file, the reader going away, flow control,
//! and the descriptor's flags put back.

use std::cell::RefCell;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use torsion_reactor::testing::{PATIENCE, test_reactor};
use torsion_reactor::{ConnectionLost, ErrorKind, Protocol, Reactor, Transport};

/// A pipe: (read end, write end), both closed on exec.
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe2` returns.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: `pipe2` returned two new descriptors nothing else owns.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

fn flags(fd: &impl AsRawFd) -> i32 {
    // SAFETY: F_GETFL on an open descriptor.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }
}

#[derive(Default)]
struct Rec {
    made: usize,
    data: Vec<u8>,
    eof: usize,
    lost: Option<ConnectionLost>,
    paused: usize,
    resumed: usize,
}

type Shared = Rc<RefCell<Rec>>;

/// Records everything; `keep_open` is its `eof_received` answer.
struct Recorder {
    rec: Shared,
    keep_open: bool,
}

impl Recorder {
    fn new() -> (Recorder, Shared) {
        let rec = Shared::default();
        (
            Recorder {
                rec: rec.clone(),
                keep_open: false,
            },
            rec,
        )
    }
}

impl Protocol for Recorder {
    fn connection_made(&mut self, _: &Transport) {
        self.rec.borrow_mut().made += 1;
    }
    fn data_received(&mut self, _: &Transport, data: &[u8]) {
        assert_eq!(self.rec.borrow().made, 1, "data before connection_made");
        self.rec.borrow_mut().data.extend_from_slice(data);
    }
    fn eof_received(&mut self, _: &Transport) -> bool {
        self.rec.borrow_mut().eof += 1;
        self.keep_open
    }
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        let mut rec = self.rec.borrow_mut();
        assert!(rec.lost.is_none(), "connection_lost twice");
        rec.lost = Some(reason.clone());
    }
    fn pause_writing(&mut self, _: &Transport) {
        self.rec.borrow_mut().paused += 1;
    }
    fn resume_writing(&mut self, _: &Transport) {
        self.rec.borrow_mut().resumed += 1;
    }
}

fn wait_lost(reactor: &Reactor, rec: &Shared) -> ConnectionLost {
    reactor
        .run_until(PATIENCE, || rec.borrow().lost.is_some())
        .expect("connection_lost in time");
    rec.borrow().lost.clone().unwrap()
}

#[test]
fn a_read_end_delivers_data_then_end_of_file_then_a_clean_loss() {
    let reactor = test_reactor();
    let (read, mut write) = pipe();
    let (proto, rec) = Recorder::new();
    let transport = reactor.connect_read_pipe(proto, read).unwrap();
    assert_eq!(
        rec.borrow().made,
        0,
        "connection_made comes from the loop, not from inside the call"
    );
    write.write_all(b"hello, ").unwrap();
    write.write_all(b"pipe").unwrap();
    drop(write);
    assert!(wait_lost(&reactor, &rec).is_clean());
    let rec = rec.borrow();
    assert_eq!((rec.made, rec.eof), (1, 1));
    assert_eq!(rec.data, b"hello, pipe");
    assert!(transport.is_closing());
    assert_eq!(reactor.open_connections(), 0);
}

#[test]
fn a_read_end_refuses_writes_with_a_typed_error_and_never_waits_to_write() {
    let reactor = test_reactor();
    let (read, write) = pipe();
    let (proto, rec) = Recorder::new();
    let transport = reactor.connect_read_pipe(proto, read).unwrap();
    let err = transport.try_write(b"x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("read end"), "{err}");
    transport.write(b"ignored"); // the plain write ignores it, as for a closed socket
    assert_eq!(transport.buffer_size(), 0);
    // Keeping the transport open: asking to keep writing after end of file still closes.
    drop(write);
    assert!(wait_lost(&reactor, &rec).is_clean());
}

#[test]
fn a_read_end_pauses_and_resumes_reading() {
    let reactor = test_reactor();
    let (read, mut write) = pipe();
    let (proto, rec) = Recorder::new();
    let transport = reactor.connect_read_pipe(proto, read).unwrap();
    reactor
        .run_until(PATIENCE, || rec.borrow().made == 1)
        .unwrap();
    transport.pause_reading();
    assert!(!transport.is_reading());
    write.write_all(b"held").unwrap();
    // Several turns of the loop with the bytes waiting: none is delivered.
    for _ in 0..5 {
        reactor.iterate(Duration::from_millis(5)).unwrap();
    }
    assert!(rec.borrow().data.is_empty());
    transport.resume_reading();
    reactor
        .run_until(PATIENCE, || rec.borrow().data == b"held")
        .unwrap();
    transport.lose_connection();
    assert!(wait_lost(&reactor, &rec).is_clean());
}

#[test]
fn a_write_end_flushes_everything_with_flow_control_then_closes() {
    let reactor = test_reactor();
    let (mut read, write) = pipe();
    let (proto, rec) = Recorder::new();
    let transport = reactor.connect_write_pipe(proto, write).unwrap();
    // 1 MiB into a 64 KiB pipe nobody reads yet: most of it is buffered, never dropped.
    let chunk = vec![b'p'; 64 * 1024];
    for _ in 0..16 {
        transport.try_write(&chunk).unwrap();
    }
    assert!(transport.is_writing_paused());
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        read.read_to_end(&mut all).unwrap();
        all.len()
    });
    reactor
        .run_until(PATIENCE, || rec.borrow().resumed == 1)
        .expect("resume_writing once the reader drained the buffer");
    assert_eq!(rec.borrow().paused, 1);
    transport.write(b"and the last bytes");
    transport.lose_connection();
    assert!(wait_lost(&reactor, &rec).is_clean());
    assert_eq!(reader.join().unwrap(), 16 * 64 * 1024 + 18);
    let rec = rec.borrow();
    assert!(
        rec.data.is_empty() && rec.eof == 0,
        "a write end never reads"
    );
}

#[test]
fn a_write_end_whose_reader_goes_away_while_idle_is_lost_cleanly() {
    let reactor = test_reactor();
    let (read, write) = pipe();
    let (proto, rec) = Recorder::new();
    let _transport = reactor.connect_write_pipe(proto, write).unwrap();
    reactor
        .run_until(PATIENCE, || rec.borrow().made == 1)
        .unwrap();
    drop(read);
    assert!(wait_lost(&reactor, &rec).is_clean());
}

#[test]
fn a_write_end_whose_reader_goes_away_with_data_waiting_is_a_broken_pipe() {
    let reactor = test_reactor();
    let (read, write) = pipe();
    let (proto, rec) = Recorder::new();
    let transport = reactor.connect_write_pipe(proto, write).unwrap();
    transport.write(&vec![b'x'; 256 * 1024]);
    assert!(transport.buffer_size() > 0);
    drop(read);
    match wait_lost(&reactor, &rec) {
        ConnectionLost::Reset(e) => assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe),
        other => panic!("expected a broken pipe, got {other:?}"),
    }
}

#[test]
fn two_descriptors_as_one_transport_half_close_the_write_end() {
    let reactor = test_reactor();
    let (our_read, mut their_write) = pipe();
    let (mut their_read, our_write) = pipe();
    let (mut proto, rec) = Recorder::new();
    proto.keep_open = true;
    let transport = reactor.connect_pipes(proto, our_read, our_write).unwrap();
    transport.write(b"to them");
    transport.lose_write_connection().unwrap();
    // They see everything, then end of file, while we still read.
    let mut got = Vec::new();
    let reader = std::thread::spawn(move || {
        their_read.read_to_end(&mut got).unwrap();
        got
    });
    reactor
        .run_until(PATIENCE, || reader.is_finished())
        .expect("the write end is closed");
    assert_eq!(reader.join().unwrap(), b"to them");
    their_write.write_all(b"to us").unwrap();
    reactor
        .run_until(PATIENCE, || rec.borrow().data == b"to us")
        .unwrap();
    assert!(rec.borrow().lost.is_none());
    drop(their_write);
    assert!(wait_lost(&reactor, &rec).is_clean());
    assert_eq!(rec.borrow().eof, 1);
}

#[test]
fn a_fifo_works_like_a_pipe() {
    let reactor = test_reactor();
    let dir = std::env::temp_dir().join(format!("torsion-fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    // Opening a FIFO's read end without blocking, then its write end.
    let read = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags_nonblock()
        .open(&dir)
        .unwrap();
    let mut write = std::fs::OpenOptions::new().write(true).open(&dir).unwrap();
    std::fs::remove_file(&dir).unwrap();
    let (proto, rec) = Recorder::new();
    reactor.connect_read_pipe(proto, read).unwrap();
    write.write_all(b"through a fifo").unwrap();
    drop(write);
    assert!(wait_lost(&reactor, &rec).is_clean());
    assert_eq!(rec.borrow().data, b"through a fifo");
}

trait NonBlockOpen {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlockOpen for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

#[test]
fn a_large_file_is_read_a_slice_per_iteration_without_stalling_the_loop() {
    let reactor = test_reactor();
    let path = std::env::temp_dir().join(format!("torsion-file-{}", std::process::id()));
    let size = 8 * 1024 * 1024;
    std::fs::write(&path, vec![b'f'; size]).unwrap();
    let file = File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    // A callback that re-queues itself counts loop iterations while the file is read.
    let turns = Rc::new(RefCell::new(0usize));
    fn tick(turns: Rc<RefCell<usize>>) {
        *turns.borrow_mut() += 1;
        let r = Reactor::current();
        r.call_soon(move || tick(turns));
    }
    tick(turns.clone());
    let (proto, rec) = Recorder::new();
    reactor.connect_read_pipe(proto, file).unwrap();
    assert!(wait_lost(&reactor, &rec).is_clean());
    assert_eq!(rec.borrow().data.len(), size);
    assert_eq!(rec.borrow().eof, 1);
    // At most 256 KiB per iteration: at least 32 turns while 8 MiB came in.
    assert!(*turns.borrow() >= 32, "only {} turns", turns.borrow());
}

#[test]
fn dev_null_reads_as_end_of_file_at_once_and_takes_any_write() {
    let reactor = test_reactor();
    let (proto, rec) = Recorder::new();
    reactor
        .connect_read_pipe(proto, File::open("/dev/null").unwrap())
        .unwrap();
    assert!(wait_lost(&reactor, &rec).is_clean());
    assert_eq!(rec.borrow().eof, 1);

    let (proto, rec) = Recorder::new();
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    let transport = reactor.connect_write_pipe(proto, null).unwrap();
    transport.write(&vec![0; 1024 * 1024]);
    transport.lose_connection();
    assert!(wait_lost(&reactor, &rec).is_clean());
}

#[test]
fn a_file_as_a_write_end_gets_every_byte() {
    let reactor = test_reactor();
    let path = std::env::temp_dir().join(format!("torsion-out-{}", std::process::id()));
    let file = File::create(&path).unwrap();
    let (proto, rec) = Recorder::new();
    let transport = reactor.connect_write_pipe(proto, file).unwrap();
    for i in 0..1000u32 {
        transport.write(format!("line {i}\n").as_bytes());
    }
    transport.lose_connection();
    assert!(wait_lost(&reactor, &rec).is_clean());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(text.lines().count(), 1000);
    assert!(text.ends_with("line 999\n"));
}

#[test]
fn the_descriptors_flags_are_put_back_when_the_transport_closes() {
    let reactor = test_reactor();
    let (read, write) = pipe();
    // Our own copy of the open file, to look at its flags after the transport is gone.
    let witness = read.as_fd().try_clone_to_owned().unwrap();
    assert_eq!(flags(&witness) & libc::O_NONBLOCK, 0);
    let (proto, rec) = Recorder::new();
    let transport = reactor.connect_read_pipe(proto, read).unwrap();
    assert_ne!(
        flags(&witness) & libc::O_NONBLOCK,
        0,
        "non-blocking while open"
    );
    transport.lose_connection();
    wait_lost(&reactor, &rec);
    assert_eq!(
        flags(&witness) & libc::O_NONBLOCK,
        0,
        "blocking again once closed"
    );
    drop(write);
}

#[test]
fn descriptors_that_cannot_be_pipes_are_refused() {
    let reactor = test_reactor();
    let (read, write) = pipe();
    let err = reactor
        .connect_read_pipe(Recorder::new().0, write)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("not open for reading"), "{err}");
    let err = reactor
        .connect_write_pipe(Recorder::new().0, read)
        .unwrap_err();
    assert!(err.to_string().contains("not open for writing"), "{err}");
    let dir = File::open(std::env::temp_dir()).unwrap();
    let err = reactor
        .connect_read_pipe(Recorder::new().0, OwnedFd::from(dir))
        .unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");
}

#[test]
fn a_graceful_stop_flushes_a_write_end_before_closing_it() {
    let reactor = test_reactor();
    let (mut read, write) = pipe();
    let (proto, rec) = Recorder::new();
    let transport = reactor.connect_write_pipe(proto, write).unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        read.read_to_end(&mut all).unwrap();
        all.len()
    });
    let t = transport.clone();
    reactor.call_soon(move || {
        t.write(&vec![b'z'; 512 * 1024]);
        Reactor::current().stop().unwrap();
    });
    reactor.run().unwrap();
    assert_eq!(reader.join().unwrap(), 512 * 1024);
    assert!(rec.borrow().lost.as_ref().unwrap().is_clean());
}
