//! Watching a raw descriptor: prints each line read from standard input, and a timer event
//! alongside. Ends on end of input.
//!
//! `printf 'a\nb\n' | cargo run --example stdin`
//!
//! This is the `add_reader` seed idiom: the reactor keeps `std::io::stdin()` and calls back
//! whenever descriptor 0 is readable; the callback reads with a buffer of at least 8 KiB
//! (so std's `Stdin` reads straight from the descriptor and holds nothing back) and, at end
//! of input, removes the reader by its number, 0. For a protocol over standard input and
//! output, with buffering and flow control, see `stdio_upper` (`Reactor::standard_io`).

use std::io::Read;
use std::time::Duration;

use torsion::reactor::Reactor;

fn main() {
    let reactor = Reactor::current();
    let mut pending = Vec::new();
    let added = reactor.add_reader(std::io::stdin(), move || {
        let mut buf = [0u8; 16 * 1024];
        match std::io::stdin().lock().read(&mut buf) {
            Ok(0) | Err(_) => {
                if !pending.is_empty() {
                    println!("line: {}", String::from_utf8_lossy(&pending));
                }
                println!("end of input");
                let reactor = Reactor::current();
                let removed = reactor.remove_reader(0); // standard input is descriptor 0
                debug_assert!(removed, "the reader was registered on descriptor 0");
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
    // The reader is gone with its end of input: nothing is left registered.
    if reactor.registered_sources() != 0 {
        eprintln!(
            "stdin: {} descriptor(s) still registered",
            reactor.registered_sources()
        );
        std::process::exit(1);
    }
}
