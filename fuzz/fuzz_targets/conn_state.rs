//! A connection's state machine driven by arbitrary events (writes, drains, pauses,
//! half-closes, end of file, resets, panics, aborts, closes, new marks, flow deliveries):
//! no sequence breaks a connection rule (the checker is the reactor's own,
//! `net/conn/state_check.rs`, also run as a property test by `cargo test`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    torsion_reactor::fuzzing::conn_state(data);
});
