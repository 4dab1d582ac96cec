//! What the hot paths allocate, counted by a counting global allocator (this test binary
//! has one test, so the count is its own): a chain of `map`s costs one allocation per
//! `map` (the new Deferred, its step and its cancellation link in one block), which
//! Performance II brought down from five. `reactor/benches/deferred.rs` times the same
//! chain; this keeps the count from creeping back up in CI.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use torsion_reactor::Deferred;
use torsion_reactor::testing::{PATIENCE, test_reactor};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller keeps `GlobalAlloc::alloc`'s contract, which is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above, for `dealloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above, for `realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

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
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    round(&reactor);
    let per_chain = (ALLOCATIONS.load(Ordering::Relaxed) - before) / CHAINS;
    // The first Deferred, one per map and the `on_result` closure; the rest (the loop's
    // own iterations) is shared by the 64 chains.
    assert!(
        per_chain <= LINKS + 2,
        "{per_chain} allocations per chain of {LINKS} maps (at most one per map)"
    );
}
