//! Futures on the reactor: spawn, await in both directions, wakers from other threads,
//! panics, cancellation, sleep, timeout and run_until_complete.

mod common;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{PATIENCE, collect, reactor, wait};
use torsion_reactor::{
    Clock, Deferred, Error, ErrorKind, Reactor, gather, sleep, sleep_on, timeout, timeout_on,
};

/// Pending once (waking itself first), then ready: a task's way to let the loop turn.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[test]
fn spawn_runs_from_the_loop_and_its_deferred_carries_the_output() {
    let r = reactor();
    let started = Rc::new(Cell::new(false));
    let s = started.clone();
    let d = r.spawn(async move {
        s.set(true);
        YieldNow(false).await;
        "out"
    });
    assert!(!started.get(), "spawn never polls inside the call");
    assert_eq!(r.pending_tasks(), 1);
    assert_eq!(wait(&collect(d)).unwrap(), "out");
    assert_eq!(r.pending_tasks(), 0);
}

#[test]
fn a_task_awaits_a_deferred_fired_by_a_timer() {
    let r = reactor();
    let clock = Clock::new();
    let (d, resolver) = Deferred::<u32>::new();
    clock.call_later(Duration::from_secs(30), move || {
        resolver.callback(41).unwrap()
    });
    let task = r.spawn(async move { d.await.map(|n| n + 1) });
    let slot = collect(task);
    r.iterate(Duration::ZERO).unwrap();
    r.iterate(Duration::ZERO).unwrap();
    assert!(slot.borrow().is_none(), "waiting for the timer");
    clock.advance(Duration::from_secs(30));
    assert_eq!(wait(&slot).unwrap().unwrap(), 42);

    // And on the reactor's own timers, through sleep and defer_later.
    let task = r.spawn(async {
        sleep(Duration::from_millis(5)).await;
        torsion_reactor::defer_later(&Reactor::current(), Duration::from_millis(5), || 7).await
    });
    assert_eq!(wait(&collect(task)).unwrap().unwrap(), 7);
}

#[test]
fn a_callback_chain_waits_on_a_task_and_from_future_maps_results() {
    let r = reactor();
    let clock = Clock::new();
    let c = clock.clone();
    let task = r.spawn(async move {
        sleep_on(&c, Duration::from_secs(1)).await;
        10
    });
    let chained = task
        .map(|n| n * 2)
        .and_then(|n| Deferred::from_future(async move { Ok::<_, Error>(n + 1) }));
    let slot = collect(chained);
    r.iterate(Duration::ZERO).unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(wait(&slot).unwrap(), 21);

    // from_future: the future's Err is the Deferred's error.
    let failed: Deferred<u32> = Deferred::from_future(async {
        YieldNow(false).await;
        Err(Error::new(ErrorKind::InvalidInput, "from the future"))
    });
    let err = wait(&collect(failed)).unwrap_err();
    assert_eq!(err.message(), "from the future");
}

/// A one-shot signal set from another thread: the waker crosses threads.
#[derive(Default)]
struct Signal {
    state: Mutex<(u32, Option<Waker>)>,
}

struct WaitFor {
    signal: Arc<Signal>,
    count: u32,
}

impl Future for WaitFor {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.signal.state.lock().unwrap();
        if st.0 >= self.count {
            Poll::Ready(())
        } else {
            st.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

fn bump(signal: &Signal) {
    let waker = {
        let mut st = signal.state.lock().unwrap();
        st.0 += 1;
        st.1.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

#[test]
fn wakers_called_from_other_threads_wake_the_reactor() {
    let r = reactor();
    let signal = Arc::new(Signal::default());
    let done = collect(r.spawn(WaitFor {
        signal: signal.clone(),
        count: 1,
    }));
    // Let the task register its waker, then wake it from a thread while the reactor is
    // blocked in the poller with nothing else to do.
    r.run_until(PATIENCE, || signal.state.lock().unwrap().1.is_some())
        .unwrap();
    let s = signal.clone();
    let t = std::thread::spawn(move || bump(&s));
    wait(&done).unwrap();
    t.join().unwrap();

    // Many threads, many wakes: the task sees every increment.
    let signal = Arc::new(Signal::default());
    let done = collect(r.spawn(WaitFor {
        signal: signal.clone(),
        count: 4 * 500,
    }));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = signal.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    bump(&s);
                }
            })
        })
        .collect();
    wait(&done).unwrap();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_panic_in_a_task_fails_its_deferred_and_the_reactor_goes_on() {
    let r = reactor();
    let bad = r.spawn(async {
        YieldNow(false).await;
        if Reactor::current().pending_tasks() > 0 {
            panic!("task-panic-marker");
        }
        1
    });
    let good = r.spawn(async {
        YieldNow(false).await;
        YieldNow(false).await;
        2
    });
    let bad = collect(bad);
    let good = collect(good);
    let err = wait(&bad).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Panicked));
    assert!(err.to_string().contains("task-panic-marker"), "{err}");
    assert!(
        err.to_string().contains("tasks.rs"),
        "names the spawn site: {err}"
    );
    assert_eq!(wait(&good).unwrap(), 2);
}

#[test]
fn cancelling_a_task_drops_its_future_and_its_timers() {
    let r = reactor();
    let clock = Clock::new();
    struct Flag(Rc<Cell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let dropped = Rc::new(Cell::new(false));
    let flag = Flag(dropped.clone());
    let c = clock.clone();
    let task = r.spawn(async move {
        let _flag = flag;
        sleep_on(&c, Duration::from_secs(60)).await;
    });
    r.iterate(Duration::ZERO).unwrap();
    assert_eq!(clock.pending(), 1, "the task sleeps");
    task.cancel();
    assert!(dropped.get());
    assert_eq!(clock.pending(), 0, "dropping the sleep cancelled its timer");
    assert_eq!(r.pending_tasks(), 0);
    assert!(matches!(
        wait(&collect(task)).unwrap_err().kind(),
        ErrorKind::Cancelled
    ));

    // Cancelling a task cancels the Deferred it awaits (its canceller runs); so does a
    // timeout that gives up on one. A Deferred merely dropped unawaited is not cancelled.
    let producer_stopped = Rc::new(Cell::new(0));
    let p = producer_stopped.clone();
    let (awaited, _keep) = Deferred::<u32>::with_canceller(move |_| p.set(p.get() + 1));
    let task = r.spawn(awaited); // the task awaits the Deferred
    r.iterate(Duration::ZERO).unwrap();
    task.cancel();
    assert_eq!(producer_stopped.get(), 1);
    let p = producer_stopped.clone();
    let (awaited, _keep2) = Deferred::<u32>::with_canceller(move |_| p.set(p.get() + 1));
    let c = clock.clone();
    let gave_up =
        collect(r.spawn(async move { timeout_on(&c, Duration::from_secs(1), awaited).await }));
    r.iterate(Duration::ZERO).unwrap();
    clock.advance(Duration::from_secs(1));
    assert!(wait(&gave_up).unwrap().is_err());
    assert_eq!(producer_stopped.get(), 2);
    let p = producer_stopped.clone();
    let (unawaited, _keep3) = Deferred::<u32>::with_canceller(move |_| p.set(p.get() + 1));
    drop(unawaited);
    assert_eq!(producer_stopped.get(), 2);

    // A task cancelling itself while it runs.
    let (rx, tx) = Deferred::<Deferred<()>>::new();
    let me = r.spawn(async move {
        let me = rx.await.unwrap();
        me.cancel();
        YieldNow(false).await;
        unreachable!("dropped after cancelling itself");
    });
    let me_slot = Rc::new(RefCell::new(None));
    let m = me_slot.clone();
    let me = me.inspect(move |r| *m.borrow_mut() = Some(r.is_err()));
    tx.callback(me).unwrap();
    r.run_until(PATIENCE, || me_slot.borrow().is_some())
        .unwrap();
    assert_eq!(r.pending_tasks(), 0);
}

#[test]
fn sleep_timeout_and_a_self_waking_task_do_not_starve_timers() {
    let r = reactor();
    let clock = Clock::new();
    let c = clock.clone();
    let outcome = collect(r.spawn(async move {
        let slow = timeout_on(
            &c,
            Duration::from_secs(5),
            sleep_on(&c, Duration::from_secs(60)),
        );
        let fast = timeout_on(&c, Duration::from_secs(5), async { 3 });
        (slow.await.map_err(|e| e.to_string()), fast.await.ok())
    }));
    r.iterate(Duration::ZERO).unwrap();
    clock.advance(Duration::from_secs(5));
    let (slow, fast) = wait(&outcome).unwrap();
    assert!(slow.unwrap_err().contains("timed out"));
    assert_eq!(fast, Some(3));
    assert_eq!(clock.pending(), 0, "no timers left behind");

    // A task that keeps waking itself runs once per iteration: a timer still fires.
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    r.call_later(Duration::from_millis(5), move || f.set(true));
    let f = fired.clone();
    let spins = Rc::new(Cell::new(0u64));
    let s = spins.clone();
    let spinner = collect(r.spawn(async move {
        while !f.get() {
            s.set(s.get() + 1);
            YieldNow(false).await;
        }
    }));
    wait(&spinner).unwrap();
    assert!(fired.get() && spins.get() > 0);

    let t = collect(r.spawn(timeout(Duration::from_millis(1), sleep(PATIENCE))));
    assert!(matches!(
        wait(&t).unwrap().unwrap_err().kind(),
        ErrorKind::TimedOut
    ));
}

#[test]
fn run_until_complete_returns_the_output_and_refuses_to_nest() {
    let r = reactor();
    let out = r.run_until_complete(async {
        let parts = (0..5).map(|n| {
            Reactor::current().spawn(async move {
                sleep(Duration::from_millis(1)).await;
                n
            })
        });
        gather(parts).await.unwrap().into_iter().sum::<u32>()
    });
    assert_eq!(out.unwrap(), 10);
    assert!(!r.running());

    // From inside the running loop: an error, not a nested loop.
    let nested = r.run_until_complete(async {
        Reactor::current()
            .run_until_complete(async { 1 })
            .map_err(|e| format!("{:?}", e.kind()))
    });
    assert_eq!(nested.unwrap(), Err("AlreadyRunning".to_string()));

    // The reactor stopped before the future completed: Cancelled, and the future dropped.
    r.call_later(Duration::from_millis(5), || {
        Reactor::current().stop().unwrap()
    });
    let err = r.run_until_complete(sleep(PATIENCE)).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Cancelled), "{err:?}");
    assert_eq!(r.pending_tasks(), 0);

    // A panicking future.
    let err = r
        .run_until_complete(async {
            YieldNow(false).await;
            if Reactor::current().running() {
                panic!("main panicked");
            }
        })
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Panicked));
}
