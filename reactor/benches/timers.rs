//! Timers: `call_later` + `cancel` with 1M timers, and expiry order with 100k timers.
//!
//! - `timers_1M_cancel_all`: schedule 1,000,000 timers at pseudo-random deadlines 1 s to
//!   1001 s ahead, then cancel every one. torsion on the reactor (`Reactor::call_later`,
//!   real time) and on a [`Clock`]; peer: tokio's timer wheel (`tokio::time::sleep`, each
//!   polled once so it is registered with the driver, then dropped, which deregisters it; an
//!   unpolled `Sleep` is never registered, so create-and-drop alone would measure nothing);
//!   floor: a `BinaryHeap` of `(Instant, seq)` over a `Vec` of boxed closures, cancel = drop
//!   the closure, and the heap is cleared at the end.
//! - `timers_1M_cancel_half`: the same 1M timers on a [`Clock`], every other one cancelled,
//!   then one `Clock::advance` fires the 500k others in deadline order. Floor: the same heap,
//!   popped in order, running the closures not cancelled.
//! - `timer_expiry_100k`: 100k timers with shuffled, distinct deadlines (1 µs apart); only
//!   the firing is timed (scheduling is per-iteration setup). Checked once, outside the
//!   timed loop, that they fire in deadline order.
//!
//! - `timer_heap_pop_100k`: the question behind keying the timer heap by integer ticks: a
//!   `BinaryHeap` of 100k items shaped like torsion's (deadline, sequence, slab key), popped
//!   in order (only the pops are timed), with the deadline an `Instant` (32-byte items, as
//!   now) or a `u64` count of nanosecond ticks from the reactor's start (24-byte items).
//!
//! Throughput is in timers (scheduled, for the 1M groups; fired, for the expiry group;
//! popped, for the heap group).
//!
//! `cargo bench -p torsion-reactor --bench timers`

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use torsion_reactor::{Clock, DelayedCall, Reactor};

const MILLION: usize = 1_000_000;
const EXPIRY: usize = 100_000;

/// xorshift64*: a fixed, dependency-free pseudo-random sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// 1M delays from 1 s to 1001 s, nanosecond resolution, in random order.
fn random_delays(n: usize) -> Vec<Duration> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|_| Duration::from_secs(1) + Duration::from_nanos(rng.next() % 1_000_000_000_000))
        .collect()
}

/// 0..n in a random order (Fisher-Yates).
fn shuffled(n: usize) -> Vec<u32> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut v: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

thread_local! {
    static FIRED: Cell<u64> = const { Cell::new(0) };
    /// Expiry check: the rank of the last timer that fired, and how many fired out of order.
    static LAST: Cell<u32> = const { Cell::new(0) };
    static OUT_OF_ORDER: Cell<u64> = const { Cell::new(0) };
}

fn fired() -> u64 {
    FIRED.with(Cell::get)
}

/// The callback every 1M-timer variant schedules (it captures its index: a real box).
fn tick(i: usize) -> impl FnOnce() + 'static {
    move || {
        black_box(i);
        FIRED.with(|f| f.set(f.get() + 1));
    }
}

/// The callback of the expiry benchmark: records whether it fired after its predecessor.
fn ranked(rank: u32) -> impl FnOnce() + 'static {
    move || {
        LAST.with(|last| {
            if rank < last.get() {
                OUT_OF_ORDER.with(|o| o.set(o.get() + 1));
            }
            last.set(rank);
        });
        FIRED.with(|f| f.set(f.get() + 1));
    }
}

/// The floor: a heap of `(deadline, seq)` over a vector of boxed callbacks indexed by `seq`.
#[derive(Default)]
struct HeapFloor {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    slots: Vec<Option<Box<dyn FnOnce()>>>,
}

impl HeapFloor {
    fn schedule(&mut self, when: Instant, f: Box<dyn FnOnce()>) -> u64 {
        let seq = self.slots.len() as u64;
        self.slots.push(Some(f));
        self.heap.push(Reverse((when, seq)));
        seq
    }

    fn cancel(&mut self, seq: u64) {
        self.slots[seq as usize] = None;
    }

    /// Pops and runs everything due by `now`, skipping cancelled entries.
    fn fire_until(&mut self, now: Instant) {
        while let Some(&Reverse((when, seq))) = self.heap.peek() {
            if when > now {
                break;
            }
            self.heap.pop();
            if let Some(f) = self.slots[seq as usize].take() {
                f();
            }
        }
    }

    fn clear(&mut self) {
        self.heap.clear();
        self.slots.clear();
    }
}

fn cancel_all(c: &mut Criterion) {
    let delays = random_delays(MILLION);
    let mut group = c.benchmark_group("timers_1M_cancel_all");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(MILLION as u64));

    let mut floor = HeapFloor::default();
    group.bench_function("floor_binaryheap", |b| {
        b.iter(|| {
            let now = Instant::now();
            for (i, &d) in delays.iter().enumerate() {
                floor.schedule(now + d, Box::new(tick(i)));
            }
            for seq in 0..MILLION as u64 {
                floor.cancel(seq);
            }
            floor.clear();
        })
    });

    let reactor = Reactor::current();
    let mut handles: Vec<DelayedCall> = Vec::with_capacity(MILLION);
    group.bench_function("torsion_reactor", |b| {
        b.iter(|| {
            for (i, &d) in delays.iter().enumerate() {
                handles.push(reactor.call_later(d, tick(i)));
            }
            for h in &handles {
                h.cancel().unwrap();
            }
            handles.clear();
        })
    });
    assert_eq!(reactor.pending_timers(), 0);

    let clock = Clock::new();
    group.bench_function("torsion_clock", |b| {
        b.iter(|| {
            for (i, &d) in delays.iter().enumerate() {
                handles.push(clock.call_later(d, tick(i)));
            }
            for h in &handles {
                h.cancel().unwrap();
            }
            handles.clear();
        })
    });
    assert_eq!(clock.pending(), 0);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // Polled from outside any task, so tokio's cooperative budget never refuses a poll
    // (inside `block_on` it would, after 128 polls, before registering the timer).
    let _guard = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let mut sleeps: Vec<Pin<Box<tokio::time::Sleep>>> = Vec::with_capacity(MILLION);
    group.bench_function("tokio_sleep", |b| {
        b.iter(|| {
            for &d in &delays {
                let mut sleep = Box::pin(tokio::time::sleep(d));
                assert!(sleep.as_mut().poll(&mut cx).is_pending());
                sleeps.push(sleep);
            }
            sleeps.clear();
        })
    });
    group.finish();
    assert_eq!(fired(), 0, "a cancelled timer fired");
}

fn cancel_half(c: &mut Criterion) {
    let delays = random_delays(MILLION);
    let mut group = c.benchmark_group("timers_1M_cancel_half");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(MILLION as u64));
    let past_last = Duration::from_secs(1002);

    let mut floor = HeapFloor::default();
    let mut floor_round = || {
        let now = Instant::now();
        for (i, &d) in delays.iter().enumerate() {
            floor.schedule(now + d, Box::new(tick(i)));
        }
        for seq in (1..MILLION as u64).step_by(2) {
            floor.cancel(seq);
        }
        floor.fire_until(now + past_last);
        floor.clear();
    };
    let before = fired();
    floor_round();
    assert_eq!(fired() - before, MILLION as u64 / 2);
    group.bench_function("floor_binaryheap", |b| b.iter(&mut floor_round));

    let clock = Clock::new();
    let mut handles: Vec<DelayedCall> = Vec::with_capacity(MILLION);
    let mut clock_round = || {
        for (i, &d) in delays.iter().enumerate() {
            handles.push(clock.call_later(d, tick(i)));
        }
        for h in handles.iter().skip(1).step_by(2) {
            h.cancel().unwrap();
        }
        clock.advance(past_last);
        handles.clear();
    };
    let before = fired();
    clock_round();
    assert_eq!(fired() - before, MILLION as u64 / 2);
    assert_eq!(clock.pending(), 0);
    group.bench_function("torsion_clock", |b| b.iter(&mut clock_round));
    group.finish();
}

fn check_order(name: &str, round: &mut dyn FnMut()) {
    LAST.with(|l| l.set(0));
    OUT_OF_ORDER.with(|o| o.set(0));
    let before = fired();
    round();
    assert_eq!(
        fired() - before,
        EXPIRY as u64,
        "{name}: not every timer fired"
    );
    assert_eq!(
        OUT_OF_ORDER.with(Cell::get),
        0,
        "{name}: fired out of deadline order"
    );
    assert_eq!(
        LAST.with(Cell::get),
        EXPIRY as u32 - 1,
        "{name}: the last to fire is not the latest"
    );
}

fn expiry(c: &mut Criterion) {
    let ranks = shuffled(EXPIRY);
    let delay = |rank: u32| Duration::from_micros(rank as u64 + 1);
    let end = delay(EXPIRY as u32);

    let mut group = c.benchmark_group("timer_expiry_100k");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(EXPIRY as u64));

    // Each iteration gets a fresh structure with 100k timers; only the firing is timed.
    let floor = RefCell::new(HeapFloor::default());
    let floor_setup = || {
        let mut f = floor.take();
        let now = Instant::now();
        for &rank in &ranks {
            f.schedule(now + delay(rank), Box::new(ranked(rank)));
        }
        (f, now + end)
    };
    let floor_fire = |(mut f, end): (HeapFloor, Instant)| {
        f.fire_until(end);
        f.clear();
        floor.replace(f); // keep the capacity, like the Clock does
    };

    let clock = Clock::new();
    let clock_setup = || {
        for &rank in &ranks {
            clock.call_later(delay(rank), ranked(rank));
        }
    };
    let clock_fire = |()| clock.advance(end);

    // Fired in deadline order, all of them, by both (checked once, untimed).
    check_order("floor", &mut || floor_fire(floor_setup()));
    check_order("torsion_clock", &mut || {
        clock_setup();
        clock_fire(());
    });
    assert_eq!(clock.pending(), 0);

    group.bench_function("floor_binaryheap", |b| {
        b.iter_batched(floor_setup, floor_fire, BatchSize::PerIteration)
    });
    group.bench_function("torsion_clock", |b| {
        b.iter_batched(clock_setup, clock_fire, BatchSize::PerIteration)
    });
    group.finish();
}

/// Pops of a heap of 100k items keyed by `Instant` against one keyed by `u64` ticks.
fn heap_pop(c: &mut Criterion) {
    let ranks = shuffled(EXPIRY);
    let base = Instant::now();
    let mut group = c.benchmark_group("timer_heap_pop_100k");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(EXPIRY as u64));
    group.bench_function("instant_key", |b| {
        b.iter_batched(
            || {
                let mut h = BinaryHeap::with_capacity(EXPIRY);
                for (i, &rank) in ranks.iter().enumerate() {
                    let when = base + Duration::from_micros(rank as u64);
                    h.push(Reverse((when, i as u64, i as u64)));
                }
                h
            },
            |mut h| {
                let mut last = base;
                while let Some(Reverse((when, _, key))) = h.pop() {
                    assert!(when >= last);
                    last = when;
                    black_box(key);
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("u64_ticks_key", |b| {
        b.iter_batched(
            || {
                let mut h = BinaryHeap::with_capacity(EXPIRY);
                for (i, &rank) in ranks.iter().enumerate() {
                    let ticks = (rank as u64) * 1000;
                    h.push(Reverse((ticks, i as u64, i as u64)));
                }
                h
            },
            |mut h| {
                let mut last = 0;
                while let Some(Reverse((ticks, _, key))) = h.pop() {
                    assert!(ticks >= last);
                    last = ticks;
                    black_box(key);
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = cancel_all, cancel_half, expiry, heap_pop
}
criterion_main!(benches);
