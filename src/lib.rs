//! torsion: a Twisted-style callback networking framework for Rust.
#![deny(missing_docs)]

pub use torsion_endpoints as endpoints;
pub use torsion_protocols as protocols;
pub use torsion_reactor as reactor;
