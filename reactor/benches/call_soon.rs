//! `call_soon` throughput: queue N callbacks, then one `iterate(Duration::ZERO)` runs them.
//!
//! Floor: a bare `VecDeque<Box<dyn FnOnce()>>`, push N then pop-and-call. Every variant
//! runs the same closure (it captures its index, so each box is a real allocation, and bumps
//! a thread-local counter). Also measured: one empty `iterate(Duration::ZERO)`, the fixed
//! per-iteration cost (a zero-timeout poller wait) that `call_soon` batches amortize.
//!
//! `cargo bench -p torsion-reactor --bench call_soon`

use std::cell::Cell;
use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use torsion_reactor::Reactor;

thread_local! {
    static RAN: Cell<u64> = const { Cell::new(0) };
}

fn callback(i: usize) -> impl FnOnce() + 'static {
    move || {
        black_box(i);
        RAN.with(|ran| ran.set(ran.get() + 1));
    }
}

fn ran() -> u64 {
    RAN.with(Cell::get)
}

/// Runs `round` once and checks that it ran exactly `n` callbacks (outside the timed loop).
fn check(name: &str, n: usize, round: &mut impl FnMut()) {
    let before = ran();
    round();
    assert_eq!(ran() - before, n as u64, "{name}: not every callback ran");
}

fn call_soon(c: &mut Criterion) {
    let reactor = Reactor::current();
    let mut group = c.benchmark_group("call_soon");
    for n in [100usize, 10_000] {
        group.throughput(Throughput::Elements(n as u64));

        let mut queue: VecDeque<Box<dyn FnOnce()>> = VecDeque::new();
        let mut floor = move || {
            for i in 0..n {
                queue.push_back(Box::new(callback(i)));
            }
            while let Some(f) = queue.pop_front() {
                f();
            }
        };
        check("floor", n, &mut floor);
        group.bench_function(BenchmarkId::new("floor_vecdeque", n), |b| {
            b.iter(&mut floor)
        });

        let r = reactor.clone();
        let mut held = move || {
            for i in 0..n {
                r.call_soon(callback(i));
            }
            r.iterate(Duration::ZERO).unwrap();
        };
        check("torsion_handle", n, &mut held);
        group.bench_function(BenchmarkId::new("torsion_handle", n), |b| b.iter(&mut held));

        let r = reactor.clone();
        let mut current = move || {
            for i in 0..n {
                Reactor::current().call_soon(callback(i));
            }
            r.iterate(Duration::ZERO).unwrap();
        };
        check("torsion_current", n, &mut current);
        group.bench_function(BenchmarkId::new("torsion_current", n), |b| {
            b.iter(&mut current)
        });
    }
    group.finish();

    let mut group = c.benchmark_group("iterate");
    group.throughput(Throughput::Elements(1));
    group.bench_function("empty_zero_timeout", |b| {
        b.iter(|| reactor.iterate(Duration::ZERO).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = call_soon
}
criterion_main!(benches);
