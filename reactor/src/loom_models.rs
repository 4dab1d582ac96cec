//! loom models of the reactor's cross-thread code: every interleaving (up to loom's
//! bounds) of the real cores in `sync/` ([`Mailbox`], [`WakeFlag`], [`TaskFlag`],
//! [`PoolQueue`]) with a model of what surrounds them. A lost wake-up shows as a model
//! whose threads all block (loom reports the deadlock); a use after free or a leak of an
//! `Arc` as loom's own failure.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p torsion-reactor --lib loom_models
//! ```
//!
//! The eventfd and epoll are modelled by [`EventFd`]: a write makes one wake-up pending,
//! a wait blocks until one is and consumes it (an edge-triggered registration of an
//! eventfd that is never read reports each write once, which is how the epoll backend uses
//! it).

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use crate::sync::{Mailbox, PoolQueue, TaskFlag, WakeFlag};

/// The eventfd plus the wait on it.
struct EventFd {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl EventFd {
    fn new() -> EventFd {
        EventFd {
            pending: Mutex::new(false),
            cv: Condvar::new(),
        }
    }

    fn write(&self) {
        *self.pending.lock().unwrap() = true;
        self.cv.notify_one();
    }

    /// `epoll_wait`: with `block`, until a write is pending; consumes it.
    fn wait(&self, block: bool) {
        let mut pending = self.pending.lock().unwrap();
        while block && !*pending {
            pending = self.cv.wait(pending).unwrap();
        }
        *pending = false;
    }
}

/// The poller: the wake flag and the eventfd, as in `io/poller/epoll.rs`.
struct Poller {
    flag: WakeFlag,
    fd: EventFd,
}

impl Poller {
    fn new() -> Poller {
        Poller {
            flag: WakeFlag::new(),
            fd: EventFd::new(),
        }
    }

    fn notify(&self) {
        if self.flag.arm() {
            self.fd.write();
        }
    }

    fn wait(&self, block: bool) {
        self.fd.wait(block);
        self.flag.reset();
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

/// `Remote::call_from_thread` from another thread, twice, while the loop runs its
/// iterations: both calls run, and the loop never waits with a call queued and no wake-up
/// coming (the second call finds the wake-up of the first still on its way).
#[test]
fn a_call_from_another_thread_always_wakes_the_loop() {
    model(|| {
        let jobs: Arc<Mailbox<usize>> = Arc::new(Mailbox::new());
        let poller = Arc::new(Poller::new());
        let (j, p) = (jobs.clone(), poller.clone());
        let caller = thread::spawn(move || {
            for n in 0..2 {
                j.push(n).unwrap();
                p.notify();
            }
        });
        let mut ran = Vec::new();
        while ran.len() < 2 {
            // Phase 2: the calls queued so far.
            jobs.take(&mut ran);
            if ran.len() == 2 {
                break;
            }
            // Phase 6: wait, for no time if a call is already pending.
            poller.wait(!jobs.has_pending());
        }
        assert_eq!(ran, [0, 1], "in order, once each");
        caller.join().unwrap();
    });
}

/// A call racing with the reactor's close is either refused (the caller hears it) or
/// queued and then dropped by the close: never lost silently, never run after the close,
/// and the closure is always dropped (loom checks the `Arc` is released).
#[test]
fn a_call_racing_a_close_is_refused_or_dropped_never_lost() {
    model(|| {
        let jobs: Arc<Mailbox<Arc<()>>> = Arc::new(Mailbox::new());
        let token = Arc::new(());
        let refused = Arc::new(AtomicBool::new(false));
        let (j, t, r) = (jobs.clone(), token.clone(), refused.clone());
        let caller = thread::spawn(move || {
            if j.push(t).is_err() {
                r.store(true, Ordering::Release);
            }
        });
        let dropped = jobs.close();
        caller.join().unwrap();
        let refused = refused.load(Ordering::Acquire);
        assert!(
            refused != (dropped.len() == 1),
            "refused, or queued and dropped by the close: exactly one"
        );
        drop(dropped);
        let mut after = Vec::new();
        jobs.take(&mut after);
        assert!(after.is_empty(), "nothing is queued after the close");
        assert_eq!(
            Arc::strong_count(&token),
            1,
            "the call's closure is dropped"
        );
    });
}

/// A task woken from another thread while the loop polls it: the wake is never lost
/// (the task is polled again and sees what the waker did), and a task is queued at most
/// once however many wakes come.
#[test]
fn a_wake_during_a_poll_is_never_lost() {
    model(|| {
        let woken: Arc<Mailbox<usize>> = Arc::new(Mailbox::new());
        let poller = Arc::new(Poller::new());
        let flag = Arc::new(TaskFlag::queued());
        let ready = Arc::new(AtomicBool::new(false));
        woken.push(7).unwrap(); // a new task is queued once, to be polled

        let (w, p, f, r) = (woken.clone(), poller.clone(), flag.clone(), ready.clone());
        let waker = thread::spawn(move || {
            r.store(true, Ordering::Release);
            // The waker, twice (a second wake must not queue it twice).
            for _ in 0..2 {
                if f.wake() {
                    w.push(7).unwrap();
                    p.notify();
                }
            }
        });
        let mut polls = 0;
        loop {
            let mut keys = Vec::new();
            woken.take(&mut keys);
            assert!(keys.len() <= 1, "queued once: {keys:?}");
            let mut done = false;
            for _ in keys {
                flag.clear(); // before the poll
                polls += 1;
                done = ready.load(Ordering::Acquire);
            }
            if done {
                break;
            }
            poller.wait(!woken.has_pending());
        }
        assert!(polls <= 3);
        waker.join().unwrap();
    });
}

/// The thread pool's handoff: jobs submitted while workers wait, finish, and stop are
/// each run exactly once, and the shutdown returns (no worker waits forever).
#[test]
fn every_pool_job_runs_once_and_the_shutdown_ends() {
    model(|| {
        let queue: Arc<PoolQueue<usize>> = Arc::new(PoolQueue::new());
        let ran = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (q, r) = (queue.clone(), ran.clone());
                thread::spawn(move || {
                    while let Some(job) = q.next() {
                        r.fetch_add(job, Ordering::AcqRel);
                    }
                })
            })
            .collect();
        queue.push(1);
        queue.push(10);
        queue.set_stopping(true);
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(ran.load(Ordering::Acquire), 11, "each job once");
    });
}

/// A job submitted after a stop-and-restart (the reactor ran again after a shutdown) is
/// taken by a new worker, not stranded.
#[test]
fn a_pool_restarted_after_a_shutdown_takes_new_jobs() {
    model(|| {
        let queue: Arc<PoolQueue<usize>> = Arc::new(PoolQueue::new());
        let q = queue.clone();
        let first = thread::spawn(move || while q.next().is_some() {});
        queue.set_stopping(true);
        first.join().unwrap();
        queue.set_stopping(false);
        assert!(queue.push(5), "no worker is idle: one must be started");
        let q = queue.clone();
        let second = thread::spawn(move || q.next());
        assert_eq!(second.join().unwrap(), Some(5));
    });
}
