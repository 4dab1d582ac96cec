//! Watching a raw descriptor: prints each line read from standard input, and a timer event
//! alongside. Ends on end of input.
//!
//! `printf 'a\nb\n' | cargo run --example stdin`

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::Duration;

use torsion::reactor::Reactor;

fn main() {
    let reactor = Reactor::current();
    // A private handle on fd 0: reads bypass std's buffered `Stdin`, so nothing is read
    // ahead that the reactor would not see.
    let stdin = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => Rc::new(File::from(fd)),
        Err(err) => {
            eprintln!("stdin: cannot use standard input: {err}");
            std::process::exit(1);
        }
    };
    let mut pending = Vec::new();
    let reader = Rc::clone(&stdin);
    let added = reactor.add_reader(stdin, move || {
        let mut buf = [0u8; 4096];
        match (&*reader).read(&mut buf) {
            Ok(0) | Err(_) => {
                if !pending.is_empty() {
                    println!("line: {}", String::from_utf8_lossy(&pending));
                }
                println!("end of input");
                let reactor = Reactor::current();
                reactor.remove_reader(0);
                let _ = reactor.stop();
            }
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    println!("line: {}", String::from_utf8_lossy(&line[..line.len() - 1]));
                }
            }
        }
    });
    if let Err(err) = added {
        eprintln!("stdin: {err}");
        std::process::exit(1);
    }
    reactor.call_later(Duration::from_millis(10), || println!("timer event"));
    if let Err(err) = reactor.run() {
        eprintln!("stdin: {err}");
        std::process::exit(1);
    }
}
