//! Async streams over real loopback connections: the reads and writes, end of file and
//! errors, the bound on memory against a peer that floods, cancellation at every await
//! point, and the futures-io adapters.

use std::cell::RefCell;
use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use futures::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use torsion_reactor::testing::{PATIENCE, test_reactor, wait_for};
use torsion_reactor::{
    Address, AsyncStream, Clock, DEFAULT_STREAM_LIMIT, Error, ErrorKind, Reactor, stream_client,
    stream_factory, timeout_on,
};

/// Streams accepted by a test server, kept for the test to drive.
type Accepted = Rc<RefCell<Vec<AsyncStream>>>;

fn server(r: &Reactor, limit: usize) -> (SocketAddr, Accepted) {
    let accepted: Accepted = Rc::default();
    let a = accepted.clone();
    let factory = stream_factory(move |stream| {
        a.borrow_mut().push(stream);
        async {}
    })
    .with_limit(limit);
    let port = r
        .listen_tcp("127.0.0.1:0".parse().unwrap(), factory)
        .expect("listens on loopback");
    (port.local_addr().socket_addr().unwrap(), accepted)
}

fn take_accepted(r: &Reactor, accepted: &Accepted) -> AsyncStream {
    r.run_until(PATIENCE, || !accepted.borrow().is_empty())
        .expect("the server accepts");
    accepted.borrow_mut().remove(0)
}

/// A connected pair: (the server's stream, the client's).
fn pair(r: &Reactor) -> (AsyncStream, AsyncStream) {
    pair_with_limit(r, DEFAULT_STREAM_LIMIT)
}

fn pair_with_limit(r: &Reactor, limit: usize) -> (AsyncStream, AsyncStream) {
    let (addr, accepted) = server(r, limit);
    let (client, connected) = stream_client();
    r.connect_tcp(addr, client).connect();
    let client = wait_for(r, connected).expect("connects");
    (take_accepted(r, &accepted), client)
}

/// Runs `fut` to completion on the test reactor (a task; at most PATIENCE).
fn run<T: 'static>(r: &Reactor, fut: impl std::future::Future<Output = T> + 'static) -> T {
    wait_for(r, r.spawn(fut)).expect("the task completes")
}

fn wait_buffered(r: &Reactor, stream: &AsyncStream, n: usize) {
    r.run_until(PATIENCE, || stream.buffered() >= n)
        .unwrap_or_else(|e| panic!("{} of {n} bytes arrived: {e}", stream.buffered()));
}

#[test]
fn lines_delimiters_exact_sizes_and_chunks() {
    let r = test_reactor();
    let (mut server, client) = pair(&r);
    client.write(b"first line\nsecond\r\nABCDEFGHtail").unwrap();
    let got = run(&r, async move {
        let line = server.read_line(100).await?;
        let until = server.read_until(b"\r\n", 100).await?;
        let mut exact = [0u8; 8];
        server.read_exact(&mut exact).await?;
        let chunk = server.read_chunk(2).await?;
        let mut rest = [0u8; 10];
        let n = server.read(&mut rest).await?;
        Ok::<_, std::io::Error>((line, until, exact, chunk, rest[..n].to_vec()))
    })
    .unwrap();
    assert_eq!(&got.0[..], b"first line\n");
    assert_eq!(&got.1[..], b"second\r\n");
    assert_eq!(&got.2, b"ABCDEFGH");
    assert_eq!(&got.3[..], b"ta");
    assert_eq!(got.4, b"il");
}

#[test]
fn a_line_longer_than_the_maximum_fails_and_stays_readable() {
    let r = test_reactor();
    let (mut server, client) = pair(&r);
    client.write(b"0123456789abc\nnext\n").unwrap();
    wait_buffered(&r, &server, 19);
    let (err, rest) = run(&r, async move {
        let err = server.read_line(10).await.unwrap_err();
        let rest = server.read_chunk(100).await.unwrap();
        (err, rest)
    });
    assert_eq!(err.kind(), IoKind::InvalidData);
    assert!(
        err.to_string()
            .contains("within the first 10 bytes from 127.0.0.1:"),
        "{err}"
    );
    assert_eq!(&rest[..], b"0123456789abc\nnext\n", "nothing was lost");
}

#[test]
fn end_of_file_gives_the_rest_then_empty_reads_and_read_exact_fails_without_taking() {
    let r = test_reactor();
    let (mut server, client) = pair(&r);
    client.write(b"one\ntwo").unwrap();
    client.shutdown().unwrap();
    let got = run(&r, async move {
        let one = server.read_line(100).await.unwrap();
        let mut four = [0u8; 4];
        let short = server.read_exact(&mut four).await.unwrap_err();
        let until = server.read_until(b"!", 100).await.unwrap_err();
        let two = server.read_line(100).await.unwrap();
        let end = server.read_line(100).await.unwrap();
        let chunk = server.read_chunk(10).await.unwrap();
        (one, short, until, two, end, chunk, server.at_eof())
    });
    assert_eq!(&got.0[..], b"one\n");
    assert_eq!(got.1.kind(), IoKind::UnexpectedEof);
    assert!(got.1.to_string().contains("3 of the 4 bytes"), "{}", got.1);
    assert_eq!(got.2.kind(), IoKind::UnexpectedEof);
    assert_eq!(&got.3[..], b"two", "the last line, without its newline");
    assert!(got.4.is_empty() && got.5.is_empty());
    assert!(got.6, "at_eof once all is read");
}

#[test]
fn a_half_closed_stream_still_writes_and_drops_close_after_flushing() {
    let r = test_reactor();
    let (mut server, mut client) = pair(&r);
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected = big.clone();
    client.shutdown().unwrap();
    let reader = r.spawn(async move {
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.map(|_| got)
    });
    let writer = r.spawn(async move {
        // The peer's end of file, then our answer: the writing side is still open.
        assert!(server.read_chunk(10).await.unwrap().is_empty());
        server.write_all(&big).await.unwrap();
        // Dropped here: closes once the 2 MB are sent.
    });
    wait_for(&r, writer).unwrap();
    let got = wait_for(&r, reader).unwrap().unwrap();
    assert!(
        got == expected,
        "got {} of {} bytes",
        got.len(),
        expected.len()
    );
    r.run_until(PATIENCE, || r.open_connections() == 0)
        .expect("both connections closed");
}

#[test]
fn addresses_are_those_of_the_connection() {
    let r = test_reactor();
    let (server, client) = pair(&r);
    assert_eq!(server.peer_addr(), client.local_addr());
    assert_eq!(server.local_addr(), client.peer_addr());
    assert!(matches!(server.peer_addr(), Address::Tcp(a) if a.ip().is_loopback()));
}

#[test]
fn a_reset_is_an_error_after_the_bytes_that_came_before_it() {
    let r = test_reactor();
    let (addr, accepted) = server(&r, DEFAULT_STREAM_LIMIT);
    let peer = TcpStream::connect(addr).unwrap();
    let mut server = take_accepted(&r, &accepted);
    (&peer).write_all(b"last words").unwrap();
    wait_buffered(&r, &server, 10);
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer); // RST
    let (words, err, write_err) = run(&r, async move {
        let words = server.read_chunk(100).await.unwrap();
        let err = server.read_chunk(100).await.unwrap_err();
        let write_err = server.write(b"x").unwrap_err();
        (words, err, write_err)
    });
    assert_eq!(&words[..], b"last words");
    assert_eq!(err.kind(), IoKind::ConnectionReset, "{err}");
    assert_eq!(write_err.kind(), IoKind::ConnectionReset, "{write_err}");
}

#[test]
fn writing_after_close_is_an_error_and_wait_closed_reports_how_it_ended() {
    let r = test_reactor();
    let (server, mut client) = pair(&r);
    server.close();
    let err = server.write(b"late").unwrap_err();
    assert_eq!(err.kind(), IoKind::BrokenPipe);
    let closed = run(&r, async move { server.wait_closed().await });
    closed.expect("a clean close");
    // The peer reads end of file; its side stays open until it closes it too.
    let client_closed = run(&r, async move {
        assert!(client.read_chunk(10).await?.is_empty());
        assert!(!client.transport().is_closing());
        client.close();
        client.wait_closed().await
    });
    client_closed.expect("a clean close");
}

// ---------------------------------------------------------------------------------------
// Memory is bounded.

/// Sends from a raw socket without blocking until the stream's buffer and the kernel's are
/// full: the peer is pushed back when its writes have made no progress for a while (a
/// steady state, observed while the reactor runs). Returns the bytes sent, and the most
/// the stream ever buffered.
fn flood(r: &Reactor, peer: &TcpStream, stream: &AsyncStream) -> (usize, usize) {
    peer.set_nonblocking(true).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let (mut sent, mut most) = (0usize, 0usize);
    let mut stuck_since: Option<Instant> = None;
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "the peer was never pushed back");
        match (&*peer).write(&chunk) {
            Ok(n) => {
                sent += n;
                stuck_since = None;
            }
            Err(e) if e.kind() == IoKind::WouldBlock => {
                let since = *stuck_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(300) {
                    break;
                }
            }
            Err(e) => panic!("{e}"),
        }
        r.iterate(Duration::from_millis(1)).unwrap();
        most = most.max(stream.buffered());
    }
    (sent, most)
}

#[test]
fn a_task_that_does_not_read_stops_the_peer_and_memory_stays_bounded() {
    let r = test_reactor();
    let limit = 32 * 1024;
    let (addr, accepted) = server(&r, limit);
    let peer = TcpStream::connect(addr).unwrap();
    let mut stream = take_accepted(&r, &accepted);
    let (sent, most) = flood(&r, &peer, &stream);
    // One socket read (at most 64 KiB) may land on top of a full buffer.
    assert!(
        most <= limit + 64 * 1024,
        "buffered {most} bytes with a limit of {limit}"
    );
    assert!(
        stream.buffered() >= limit,
        "the buffer filled before pausing"
    );
    assert!(
        !stream.transport().is_reading(),
        "reading from the peer is paused"
    );
    assert!(sent > stream.buffered(), "the kernel holds the rest");
    // Reading resumes the flow: every byte arrives, in order.
    let got = run(&r, async move {
        let mut total = 0;
        while total < sent {
            let chunk = stream.read_chunk(1 << 20).await.unwrap();
            assert!(chunk.iter().all(|&b| b == 7));
            total += chunk.len();
        }
        total
    });
    assert_eq!(got, sent);
}

#[test]
fn a_long_line_raises_the_bound_to_its_maximum_only_while_it_is_read() {
    let r = test_reactor();
    let limit = 16 * 1024;
    let (addr, accepted) = server(&r, limit);
    let peer = TcpStream::connect(addr).unwrap();
    let mut stream = take_accepted(&r, &accepted);
    let mut line = vec![b'x'; 200 * 1024];
    line.push(b'\n');
    let writer = {
        let mut peer = peer.try_clone().unwrap();
        let line = line.clone();
        std::thread::spawn(move || peer.write_all(&line))
    };
    let max = 256 * 1024;
    let got = run(&r, async move {
        let got = stream.read_line(max).await.unwrap();
        (got, stream)
    });
    writer.join().unwrap().unwrap();
    assert_eq!(got.0.len(), line.len());
    assert!(got.1.buffered() == 0);
}

#[test]
fn a_writer_faster_than_its_reader_waits_in_drain_and_loses_nothing() {
    let r = test_reactor();
    let (addr, accepted) = server(&r, DEFAULT_STREAM_LIMIT);
    let peer = TcpStream::connect(addr).unwrap();
    let mut stream = take_accepted(&r, &accepted);
    let (high, _) = stream.transport().write_buffer_limits();
    let total = 8 * 1024 * 1024;
    let most = Rc::new(RefCell::new(0usize));
    let m = most.clone();
    let writer = r.spawn(async move {
        let chunk = vec![3u8; 16 * 1024];
        let mut written = 0;
        while written < total {
            stream.write_all(&chunk).await.unwrap();
            written += chunk.len();
            let queued = stream.transport().buffer_size();
            let mut m = m.borrow_mut();
            *m = (*m).max(queued);
        }
    });
    // The peer reads slowly, from a thread, every byte.
    let reader = std::thread::spawn(move || {
        let mut peer = peer;
        let mut buf = vec![0u8; 4096];
        let mut got = 0;
        while got < total {
            let n = peer.read(&mut buf).unwrap();
            assert!(n > 0 && buf[..n].iter().all(|&b| b == 3));
            got += n;
        }
        got
    });
    wait_for(&r, writer).unwrap();
    r.run_until(PATIENCE, || reader.is_finished()).unwrap();
    assert_eq!(reader.join().unwrap(), total);
    assert!(
        *most.borrow() <= high + 16 * 1024,
        "the write buffer reached {} bytes (high mark {high})",
        most.borrow()
    );
}

// ---------------------------------------------------------------------------------------
// Cancellation at every await point: a read that is dropped leaves every byte for the next.

/// Starts `op` under a timeout on a `Clock`, lets it wait (after `arrive` bytes are
/// buffered), times it out (dropping it), and returns the stream.
fn cancelled_midway<F>(r: &Reactor, mut stream: AsyncStream, arrive: usize, op: F) -> AsyncStream
where
    F: for<'a> FnOnce(&'a mut AsyncStream) -> LocalBoxFuture<'a, ()> + 'static,
{
    let clock = Clock::new();
    wait_buffered(r, &stream, arrive);
    let c = clock.clone();
    let task = r.spawn(async move {
        let outcome = timeout_on(&c, Duration::from_secs(1), op(&mut stream)).await;
        assert!(outcome.is_err(), "the read was still waiting");
        stream
    });
    // Let the task start waiting, then time it out.
    r.run_until(PATIENCE, || r.pending_tasks() == 1).unwrap();
    r.iterate(Duration::ZERO).unwrap();
    clock.advance(Duration::from_secs(1));
    wait_for(r, task).expect("timed out")
}

#[test]
fn a_cancelled_read_line_read_until_or_read_exact_loses_no_byte() {
    let r = test_reactor();
    let (server, client) = pair(&r);
    client.write(b"partial").unwrap();
    let server = cancelled_midway(&r, server, 7, |s| {
        Box::pin(async move { drop(s.read_line(100).await) })
    });
    let server = cancelled_midway(&r, server, 7, |s| {
        Box::pin(async move { drop(s.read_until(b"\r\n", 100).await) })
    });
    let server = cancelled_midway(&r, server, 7, |s| {
        Box::pin(async move {
            let mut buf = [0u8; 20];
            drop(s.read_exact(&mut buf).await)
        })
    });
    client.write(b" line\n").unwrap();
    let mut server = server;
    let line = run(&r, async move { server.read_line(100).await.unwrap() });
    assert_eq!(&line[..], b"partial line\n");
}

#[test]
fn a_cancelled_read_or_read_chunk_loses_no_byte() {
    let r = test_reactor();
    let (server, client) = pair(&r);
    let server = cancelled_midway(&r, server, 0, |s| {
        Box::pin(async move { drop(s.read_chunk(100).await) })
    });
    let server = cancelled_midway(&r, server, 0, |s| {
        Box::pin(async move {
            let mut buf = [0u8; 10];
            drop(s.read(&mut buf).await)
        })
    });
    let server = cancelled_midway(&r, server, 0, |s| {
        Box::pin(async move {
            let mut buf = [0u8; 10];
            drop(AsyncReadExt::read(s, &mut buf).await) // futures-io's poll_read
        })
    });
    client.write(b"after").unwrap();
    let mut server = server;
    // In one chunk or several (a short read splits it under injected faults).
    let got = run(&r, async move {
        let mut got = Vec::new();
        while got.len() < 5 {
            got.extend_from_slice(&server.read_chunk(100).await.unwrap());
        }
        got
    });
    assert_eq!(&got[..], b"after");
}

#[test]
fn a_cancelled_drain_or_write_all_keeps_what_was_written() {
    let r = test_reactor();
    let (addr, accepted) = server(&r, DEFAULT_STREAM_LIMIT);
    let mut peer = TcpStream::connect(addr).unwrap();
    let stream = take_accepted(&r, &accepted);
    // Fill the write buffer past its high mark: the peer does not read yet.
    let big = vec![5u8; 4 * 1024 * 1024];
    stream.write(&big).unwrap();
    assert!(stream.transport().is_writing_paused());
    let stream = cancelled_midway(&r, stream, 0, |s| {
        Box::pin(async move { drop(s.drain().await) })
    });
    let stream = cancelled_midway(&r, stream, 0, |s| {
        Box::pin(async move { drop(s.write_all(b"!").await) })
    });
    drop(stream); // closes after flushing
    peer.set_read_timeout(Some(PATIENCE)).unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).map(|_| got)
    });
    r.run_until(PATIENCE, || reader.is_finished()).unwrap();
    let got = reader.join().unwrap().unwrap();
    assert_eq!(
        got.len(),
        big.len() + 1,
        "every byte, the cancelled write_all's too"
    );
    assert_eq!(got.last(), Some(&b'!'));
}

#[test]
fn a_cancelled_wait_closed_changes_nothing() {
    let r = test_reactor();
    let (server, client) = pair(&r);
    let server = cancelled_midway(&r, server, 0, |s| {
        Box::pin(async move { drop(s.wait_closed().await) })
    });
    // A reset (linger 0), so that the server's connection ends at once.
    client
        .transport()
        .with_socket(|s| s.set_linger(Some(Duration::ZERO)))
        .unwrap();
    client.abort();
    let closed = run(&r, async move { server.wait_closed().await });
    assert_eq!(closed.unwrap_err().kind(), IoKind::ConnectionReset);
}

#[test]
fn cancelling_a_connect_leaves_no_connection() {
    let r = test_reactor();
    let (addr, accepted) = server(&r, DEFAULT_STREAM_LIMIT);
    let (client, connected) = stream_client();
    let connector = r.connect_tcp(addr, client);
    connector.connect();
    connected.cancel();
    // Whether or not the connection was made, nothing stays open.
    r.run_until(PATIENCE, || {
        accepted.borrow_mut().clear();
        r.open_connections() == 0 && r.pending_tasks() == 0
    })
    .expect("no connection left");
}

#[test]
fn dropping_a_task_that_holds_a_stream_closes_the_connection() {
    let r = test_reactor();
    let (mut server, mut client) = pair(&r);
    let blocked = r.spawn(async move {
        let _ = server.read_line(100).await; // never completes
    });
    r.run_until(PATIENCE, || r.pending_tasks() == 1).unwrap();
    r.iterate(Duration::ZERO).unwrap();
    blocked.cancel(); // drops the task, and with it the stream
    let end = run(&r, async move { client.read_chunk(10).await.unwrap() });
    assert!(end.is_empty(), "the client reads end of file");
    r.run_until(PATIENCE, || r.open_connections() == 0).unwrap();
}

// ---------------------------------------------------------------------------------------
// Servers and the ecosystem's adapters.

#[test]
fn a_panicking_handler_loses_its_connection_only() {
    let r = test_reactor();
    let port = r
        .listen_tcp(
            "127.0.0.1:0".parse().unwrap(),
            stream_factory(|mut stream: AsyncStream| async move {
                let line = stream.read_line(100).await?;
                if &line[..] == b"panic\n" {
                    panic!("the handler gives up");
                }
                stream.write_all(&line).await
            }),
        )
        .unwrap();
    let addr = port.local_addr().socket_addr().unwrap();
    let ask = |line: &'static [u8]| {
        let (client, connected) = stream_client();
        r.connect_tcp(addr, client).connect();
        r.spawn(async move {
            let mut s = connected.await?;
            s.write_all(line).await?;
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        })
    };
    let panicked = wait_for(&r, ask(b"panic\n")).unwrap().unwrap();
    assert!(panicked.is_empty(), "its connection was closed");
    let fine = wait_for(&r, ask(b"hello\n")).unwrap().unwrap();
    assert_eq!(fine, b"hello\n");
}

#[test]
fn futures_io_copy_and_buf_reader_work_on_streams() {
    let r = test_reactor();
    let port = r
        .listen_tcp(
            "127.0.0.1:0".parse().unwrap(),
            // An echo server in one line of the ecosystem's code.
            stream_factory(|stream: AsyncStream| async move {
                let (mut from, mut to) = stream.into_split();
                futures::io::copy(&mut from, &mut to).await.map(drop)
            }),
        )
        .unwrap();
    let (client, connected) = stream_client();
    r.connect_tcp(port.local_addr().socket_addr().unwrap(), client)
        .connect();
    let lines = run(&r, async move {
        let stream = connected.await.unwrap();
        let (reader, mut writer) = stream.into_split();
        for i in 0..1000 {
            writer
                .write_all(format!("line {i}\n").as_bytes())
                .await
                .unwrap();
        }
        // futures-io's close is a half-close: the copy ends, then the server closes.
        AsyncWriteExt::close(&mut writer).await.unwrap();
        let mut lines = Vec::new();
        let mut reader = BufReader::new(reader).lines();
        while let Some(line) = futures::StreamExt::next(&mut reader).await {
            lines.push(line.unwrap());
        }
        lines
    });
    assert_eq!(lines.len(), 1000);
    assert_eq!(lines[999], "line 999");
}

#[test]
fn connect_errors_name_the_destination() {
    let r = test_reactor();
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (client, connected) = stream_client();
    r.connect_tcp(free, client).connect();
    let err: Error = wait_for(&r, connected.map(|_| ())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(
        err.to_string()
            .contains(&format!("cannot connect to {free}: connection refused")),
        "{err}"
    );
}
