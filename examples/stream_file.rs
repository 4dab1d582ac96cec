//! Sends a file to every client that connects, as fast as each client reads it and no
//! faster (the guide's chapter on flow control).
//!
//! ```text
//! cargo run --example stream_file -- Cargo.lock          # on tcp:8000
//! nc -d 127.0.0.1 8000 | cmp - Cargo.lock && echo same
//! ```

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::rc::Rc;

use torsion::prelude::*;
use torsion::program;

/// Bytes read from the file per write.
const CHUNK: usize = 64 * 1024;

/// One client: the file, read and written a chunk at a time while the client keeps up.
struct SendFile {
    path: Rc<PathBuf>,
    file: Option<File>,
}

impl SendFile {
    /// Writes chunks until the file ends or the write buffer is above its high-water mark.
    fn produce(&mut self, transport: &Transport) {
        let Some(file) = &mut self.file else { return };
        let mut chunk = vec![0; CHUNK];
        while !transport.is_writing_paused() {
            match file.read(&mut chunk) {
                Ok(0) => {
                    self.file = None;
                    transport.lose_connection(); // after the rest is sent
                    return;
                }
                Ok(n) => transport.write(&chunk[..n]),
                Err(err) => {
                    log::warn!("cannot read {}: {err}", self.path.display());
                    self.file = None;
                    transport.abort_connection();
                    return;
                }
            }
        }
        // Paused: `resume_writing` comes once the client has read enough.
    }
}

impl Protocol for SendFile {
    fn connection_made(&mut self, transport: &Transport) {
        match File::open(&*self.path) {
            Ok(file) => {
                self.file = Some(file);
                self.produce(transport);
            }
            Err(err) => {
                log::warn!("cannot open {}: {err}", self.path.display());
                transport.abort_connection();
            }
        }
    }

    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}

    fn resume_writing(&mut self, transport: &Transport) {
        self.produce(transport);
    }
}

fn main() {
    program::init_logging();
    let mut args = std::env::args().skip(1);
    let usage = "usage: stream_file PATH [ENDPOINT]   (default tcp:8000)";
    let Some(path) = args.next() else {
        program::usage_error(usage)
    };
    let endpoint = args.next().unwrap_or_else(|| "tcp:8000".to_string());
    if args.next().is_some() {
        program::usage_error(usage);
    }
    if let Err(err) = File::open(&path) {
        program::fail(&format!("cannot open {path}: {err}"));
    }
    let path = Rc::new(PathBuf::from(path));
    let reactor = Reactor::current();
    let factory = factory_fn(move |_| SendFile {
        path: Rc::clone(&path),
        file: None,
    });
    program::listen(&reactor, &endpoint, factory);
    program::run(&reactor);
}
