//! Your first server (the guide's first chapter): every byte a client sends comes back.
//!
//! ```text
//! cargo run --example first_server                # listens on tcp:8000
//! nc 127.0.0.1 8000                               # in another terminal
//! ```

use torsion::prelude::*;

/// One connection's protocol: what to do when bytes arrive.
struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }
}

fn main() {
    // Listen on the endpoint given as the first argument (default tcp:8000) and build
    // one `Echo` per connection, until Ctrl-C or SIGTERM.
    torsion::program::serve("tcp:8000", factory_fn(|_| Echo));
}
