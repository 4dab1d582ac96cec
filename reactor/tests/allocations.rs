//! What the hot paths allocate, counted by a counting global allocator (this test binary
//! has one test, so the count is its own): a chain of `map`s costs one allocation per
//! `map` (the new Deferred, its step and its cancellation link in one block), which
//! Performance II brought down from five. `reactor/benches/deferred.rs` times the same
//! chain; this keeps the count from creeping back up in CI.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use std::cell::Cell;
use std::rc::Rc;

use counting_alloc::{Counting, allocations};
use torsion_reactor::Deferred;
use torsion_reactor::testing::{PATIENCE, test_reactor};

#[global_allocator]
static GLOBAL: Counting = Counting;

const LINKS: u64 = 10;
const CHAINS: u64 = 64;

/// Builds `CHAINS` chains of `LINKS` maps, fires them and runs the reactor until all ended.
fn round(reactor: &torsion_reactor::Reactor) {
    let done = Rc::new(Cell::new(0u64));
    for _ in 0..CHAINS {
        let (mut d, resolver) = Deferred::<u64>::new();
        for k in 1..=LINKS {
            d = d.map(move |x| x + k);
        }
        let done = Rc::clone(&done);
        d.on_result(move |r| {
            assert_eq!(r.ok(), Some(LINKS * (LINKS + 1) / 2));
            done.set(done.get() + 1);
        });
        resolver.callback(0).expect("fires once");
    }
    reactor
        .run_until(PATIENCE, || done.get() == CHAINS)
        .expect("every chain ends");
}

#[test]
fn a_map_costs_one_allocation() {
    let reactor = test_reactor();
    round(&reactor); // the queues grow to their size once
    let before = allocations();
    round(&reactor);
    let per_chain = (allocations() - before) / CHAINS;
    // The first Deferred, one per map and the `on_result` closure; the rest (the loop's
    // own iterations) is shared by the 64 chains.
    assert!(
        per_chain <= LINKS + 2,
        "{per_chain} allocations per chain of {LINKS} maps (at most one per map)"
    );
}
