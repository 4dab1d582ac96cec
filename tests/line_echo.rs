//! The `line_echo` example: a pipelining client's lines come back, each as a line, in
//! order, however the requests are cut into writes; SIGTERM stops it with status 0.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Server;

const LOCAL: &str = "tcp:port=0:interface=127.0.0.1";
const LONG: Duration = Duration::from_secs(20);

#[test]
fn pipelined_lines_come_back_in_order() {
    let mut server = Server::start("line_echo", &[LOCAL]);
    let c = TcpStream::connect(server.socket_addr()).expect("connects");
    c.set_read_timeout(Some(LONG)).unwrap();
    // 2,000 requests written before any reply is read, cut at odd places.
    let mut all = Vec::new();
    for i in 0..2000 {
        all.extend_from_slice(format!("request number {i}\n").as_bytes());
    }
    let writer = {
        let mut c = c.try_clone().unwrap();
        std::thread::spawn(move || {
            for chunk in all.chunks(777) {
                c.write_all(chunk).expect("writes");
            }
        })
    };
    let mut reader = BufReader::new(&c);
    let mut line = String::new();
    for i in 0..2000 {
        line.clear();
        reader.read_line(&mut line).expect("reads a reply");
        assert_eq!(line, format!("request number {i}\n"));
    }
    writer.join().unwrap();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(LONG).expect("exits");
    assert_eq!(status.code(), Some(0));
}
