//! A Deferred chain of 10 callbacks: `Deferred::new()`, 10 `.map()`, a final `on_result`,
//! fire it, and iterate the reactor until the last callback ran.
//!
//! Callbacks run from the loop (see docs/async.md): firing queues the Deferred, one reactor
//! callback drains the queue, and each link fired during the drain joins the same drain, so
//! a chain completes within one iteration (checked once, outside the timed loop). Variants:
//! 64 chains per iteration (64 × 11 Deferreds fit one drain of `DRAIN_BUDGET` = 1024), and
//! one chain per iteration, which also pays the iteration itself (a zero-timeout poller wait).
//!
//! Floor: 10 boxed closures (each captures its step, so each is a real allocation) called
//! in sequence. Throughput is in chains.
//!
//! Allocations are counted once, outside the timed loops (a counting global allocator): a
//! chain of ten `map`s must cost at most one allocation per `map` (the new Deferred, its
//! step and its cancellation link live in one allocation), plus one for the first Deferred
//! and one for the final `on_result` closure. The count is printed and asserted.
//!
//! `cargo bench -p torsion-reactor --bench deferred`

use std::cell::Cell;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use torsion_reactor::{DRAIN_BUDGET, Deferred, Reactor};

const LINKS: u64 = 10;
/// 0 + 1 + 2 + ... + 10.
const RESULT: u64 = LINKS * (LINKS + 1) / 2;

#[path = "../tests/support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{Counting, allocations};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by one chain of ten `map`s, built, fired and run to the end (after a
/// warm-up round, so the reactor's queues have their capacity).
fn allocations_per_chain(reactor: &Reactor) -> u64 {
    torsion_round(reactor, 64);
    let before = allocations();
    torsion_round(reactor, 64);
    (allocations() - before) / 64
}

thread_local! {
    static DONE: Cell<u64> = const { Cell::new(0) };
}

fn done() -> u64 {
    DONE.with(Cell::get)
}

fn floor_chain(start: u64) -> u64 {
    let steps: [Box<dyn FnOnce(u64) -> u64>; LINKS as usize] = std::array::from_fn(|k| {
        Box::new(move |x: u64| x + k as u64 + 1) as Box<dyn FnOnce(u64) -> u64>
    });
    steps.into_iter().fold(black_box(start), |x, f| f(x))
}

/// Builds `chains` chains, fires them, and iterates until all have finished; returns how
/// many iterations that took.
fn torsion_round(reactor: &Reactor, chains: u64) -> u32 {
    let target = done() + chains;
    for _ in 0..chains {
        let (mut d, resolver) = Deferred::<u64>::new();
        for k in 1..=LINKS {
            d = d.map(move |x| x + k);
        }
        d.on_result(|r| {
            assert_eq!(r.unwrap(), RESULT);
            DONE.with(|c| c.set(c.get() + 1));
        });
        resolver.callback(black_box(0)).unwrap();
    }
    let mut iterations = 0;
    while done() < target {
        reactor.iterate(Duration::ZERO).unwrap();
        iterations += 1;
    }
    iterations
}

fn deferred_chain(c: &mut Criterion) {
    let reactor = Reactor::current();
    let per_chain = allocations_per_chain(&reactor);
    println!(
        "deferred_chain10: {per_chain} allocations per chain of {LINKS} maps \
         (the first Deferred, {LINKS} maps, the on_result closure)"
    );
    assert!(
        per_chain <= LINKS + 2,
        "a map should cost at most one allocation ({per_chain} per chain of {LINKS})"
    );
    let mut group = c.benchmark_group("deferred_chain10");
    for chains in [64u64, 1] {
        assert!(chains * (LINKS + 1) <= DRAIN_BUDGET as u64);
        group.throughput(Throughput::Elements(chains));
        assert_eq!(floor_chain(0), RESULT);
        group.bench_function(BenchmarkId::new("floor_boxed_closures", chains), |b| {
            b.iter(|| {
                for _ in 0..chains {
                    assert_eq!(floor_chain(0), RESULT);
                }
            })
        });
        assert_eq!(
            torsion_round(&reactor, chains),
            1,
            "a chain fired during a drain should complete within one iteration"
        );
        group.bench_function(BenchmarkId::new("torsion", chains), |b| {
            b.iter(|| torsion_round(&reactor, chains))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = deferred_chain
}
criterion_main!(benches);
