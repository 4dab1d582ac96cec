//! The coordination primitives (Lock, Semaphore, Event, Queue), task groups, as_completed
//! and shared Deferreds: first come first served across tasks and callbacks, and nothing
//! lost or leaked when a waiter gives up.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use torsion_reactor::testing::{PATIENCE, test_reactor, wait_for};
use torsion_reactor::{
    Clock, Deferred, Error, ErrorKind, Event, Lock, Queue, Reactor, Semaphore, TaskGroup,
    as_completed, defer_later, sleep, timeout_on,
};

/// Pending once (waking itself first), then ready: lets the loop turn.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn settle(r: &Reactor) {
    for _ in 0..5 {
        r.iterate(Duration::ZERO).unwrap();
    }
}

type Log = Rc<RefCell<Vec<String>>>;

// ---------------------------------------------------------------------------------------
// Lock and Semaphore.

#[test]
fn the_lock_serves_tasks_and_callbacks_in_the_order_they_asked() {
    let r = test_reactor();
    let lock = Lock::new();
    let log: Log = Rc::default();
    let first = lock.try_acquire().expect("free");
    let mut done = Vec::new();
    for i in 0..10 {
        let log = log.clone();
        if i % 2 == 0 {
            let waiting = lock.acquire();
            done.push(r.spawn(async move {
                let _guard = waiting.await;
                log.borrow_mut().push(format!("task {i}"));
                YieldNow(false).await; // hold it across a turn of the loop
            }));
        } else {
            done.push(lock.acquire_deferred().map(move |guard| {
                log.borrow_mut().push(format!("callback {i}"));
                drop(guard);
            }));
        }
    }
    assert_eq!(lock.waiting(), 10);
    settle(&r);
    assert!(log.borrow().is_empty(), "nobody gets in while it is held");
    drop(first);
    wait_for(&r, torsion_reactor::gather(done)).unwrap();
    let expected: Vec<String> = (0..10)
        .map(|i| {
            if i % 2 == 0 {
                format!("task {i}")
            } else {
                format!("callback {i}")
            }
        })
        .collect();
    assert_eq!(*log.borrow(), expected);
    assert!(!lock.is_locked());
}

#[test]
fn a_waiter_that_gives_up_leaves_the_line_and_a_grant_it_missed_passes_on() {
    let r = test_reactor();
    let lock = Lock::new();
    let held = lock.try_acquire().unwrap();
    let gave_up = lock.acquire(); // will be dropped while waiting
    let cancelled = lock.acquire_deferred(); // will be cancelled
    let granted_then_dropped = lock.acquire(); // granted, dropped before it is polled
    let last = lock.acquire_deferred();
    drop(gave_up);
    cancelled.cancel();
    drop(held);
    assert!(lock.is_locked(), "granted to the third waiter");
    drop(granted_then_dropped);
    let guard = wait_for(&r, last).expect("the last waiter gets it");
    assert!(lock.is_locked());
    drop(guard);
    assert!(!lock.is_locked());
    assert_eq!(lock.waiting(), 0);
}

#[test]
fn a_lock_acquire_under_a_timeout_gives_up_cleanly() {
    let r = test_reactor();
    let clock = Clock::new();
    let lock = Lock::new();
    let held = lock.try_acquire().unwrap();
    let (l, c) = (lock.clone(), clock.clone());
    let task = r.spawn(async move { timeout_on(&c, Duration::from_secs(5), l.acquire()).await });
    settle(&r);
    clock.advance(Duration::from_secs(5));
    let outcome = wait_for(&r, task).unwrap();
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::TimedOut);
    assert_eq!(lock.waiting(), 0);
    drop(held);
    assert!(
        lock.try_acquire().is_some(),
        "nobody holds it after the timeout"
    );
}

#[test]
fn lock_run_serialises_callback_chains_and_releases_on_failure() {
    let r = test_reactor();
    let lock = Lock::new();
    let failing: Deferred<u32> = lock.run(|| {
        defer_later(&Reactor::current(), Duration::from_millis(5), || ())
            .try_map(|()| Err(Error::new(ErrorKind::Other, "the job failed")))
    });
    let next = lock.run(|| Deferred::<u32>::succeed(7));
    assert_eq!(
        wait_for(&r, failing).unwrap_err().to_string(),
        "the job failed"
    );
    assert_eq!(wait_for(&r, next).unwrap(), 7, "the lock was released");
    assert!(!lock.is_locked());
}

#[test]
fn the_semaphore_admits_n_at_a_time_and_newcomers_queue_behind_waiters() {
    let r = test_reactor();
    let sem = Semaphore::new(2);
    let a = sem.try_acquire().unwrap();
    let _b = sem.try_acquire().unwrap();
    assert!(sem.try_acquire().is_none());
    let waiter = sem.acquire_deferred();
    drop(a);
    // The released permit went to the waiter: a newcomer does not barge in.
    assert!(sem.try_acquire().is_none());
    let permit = wait_for(&r, waiter).unwrap();
    drop(permit);
    assert_eq!(sem.available_permits(), 1);
    let zero = Semaphore::new(0);
    let later = zero.acquire_deferred();
    zero.add_permits(1);
    let _permit = wait_for(&r, later).expect("added permits serve waiters first");
    assert_eq!(zero.available_permits(), 0, "the permit went to the waiter");
}

#[test]
fn many_tasks_through_a_semaphore_never_exceed_its_permits() {
    let r = test_reactor();
    let sem = Semaphore::new(3);
    let (busy, most, order) = (
        Rc::new(Cell::new(0)),
        Rc::new(Cell::new(0)),
        Rc::new(RefCell::new(Vec::new())),
    );
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (sem, busy, most, order) = (sem.clone(), busy.clone(), most.clone(), order.clone());
            let waiting = sem.acquire();
            r.spawn(async move {
                let _permit = waiting.await;
                order.borrow_mut().push(i);
                busy.set(busy.get() + 1);
                most.set(most.get().max(busy.get()));
                YieldNow(false).await;
                busy.set(busy.get() - 1);
            })
        })
        .collect();
    wait_for(&r, torsion_reactor::gather(tasks)).unwrap();
    assert_eq!(most.get(), 3);
    assert_eq!(*order.borrow(), (0..30).collect::<Vec<_>>(), "FIFO");
}

// ---------------------------------------------------------------------------------------
// Event.

#[test]
fn setting_an_event_wakes_every_waiter_and_later_waits_return_at_once() {
    let r = test_reactor();
    let event = Event::new();
    let woken: Log = Rc::default();
    for i in 0..3 {
        let (event, woken) = (event.clone(), woken.clone());
        r.spawn(async move {
            event.wait().await;
            woken.borrow_mut().push(format!("task {i}"));
        });
    }
    let w = woken.clone();
    event
        .wait_deferred()
        .on_result(move |_| w.borrow_mut().push("callback".into()));
    let gave_up = event.wait_deferred();
    gave_up.cancel();
    settle(&r);
    assert!(woken.borrow().is_empty());
    event.set();
    r.run_until(PATIENCE, || woken.borrow().len() == 4).unwrap();
    assert!(event.is_set());
    wait_for(&r, r.spawn(event.wait())).expect("set: returns at once");
    event.clear();
    let again = event.wait_deferred();
    settle(&r);
    assert!(!again.is_fired(), "cleared: waits for the next set");
}

// ---------------------------------------------------------------------------------------
// Queue.

#[test]
fn put_waits_while_the_queue_is_full_so_memory_stays_bounded() {
    let r = test_reactor();
    let queue = Queue::new(3).unwrap();
    let most = Rc::new(Cell::new(0));
    let (q, m) = (queue.clone(), most.clone());
    let producer = r.spawn(async move {
        for i in 0..100 {
            q.put(i).await;
            m.set(m.get().max(q.len()));
        }
    });
    let q = queue.clone();
    let consumer = r.spawn(async move {
        let mut got = Vec::new();
        for _ in 0..100 {
            got.push(q.get().await);
            YieldNow(false).await; // slower than the producer
        }
        got
    });
    wait_for(&r, producer).unwrap();
    assert_eq!(
        wait_for(&r, consumer).unwrap(),
        (0..100).collect::<Vec<_>>()
    );
    assert_eq!(most.get(), 3);
    assert!(Queue::<u8>::new(0).is_err());
}

#[test]
fn getters_and_putters_are_served_in_order_from_tasks_and_callbacks() {
    let r = test_reactor();
    let queue = Queue::new(1).unwrap();
    let got: Log = Rc::default();
    for i in 0..4 {
        let got = got.clone();
        if i % 2 == 0 {
            let waiting = queue.get();
            r.spawn(async move {
                let item = waiting.await;
                got.borrow_mut().push(format!("task {i}: {item}"));
            });
        } else {
            queue.get_deferred().on_result(move |v| {
                got.borrow_mut()
                    .push(format!("callback {i}: {}", v.unwrap()))
            });
        }
    }
    settle(&r);
    for item in ["a", "b", "c", "d"] {
        queue.try_put(item).unwrap(); // each goes straight to the next getter
    }
    r.run_until(PATIENCE, || got.borrow().len() == 4).unwrap();
    // Each item went to the getter next in line (callbacks run in an earlier phase of the
    // loop than tasks, so sort what they logged).
    let mut got = got.borrow().clone();
    got.sort_by_key(|l| l.split(' ').nth(1).map(str::to_string));
    assert_eq!(
        got,
        ["task 0: a", "callback 1: b", "task 2: c", "callback 3: d"]
    );
    // Producers wait in line too.
    queue.try_put("x").unwrap();
    let second = queue.put_deferred("y");
    let third = queue.put("z");
    assert!(
        queue.try_put("w").is_err(),
        "full, and producers are waiting"
    );
    assert_eq!(queue.try_get(), Some("x"));
    assert!(second.is_fired(), "y was let in");
    assert_eq!(queue.try_get(), Some("y"));
    assert_eq!(queue.try_get(), Some("z"));
    wait_for(&r, r.spawn(third)).unwrap();
}

#[test]
fn a_cancelled_get_never_loses_an_item_and_a_cancelled_put_puts_nothing() {
    let r = test_reactor();
    let queue: Queue<u32> = Queue::new(1).unwrap();
    // A getter that was handed an item but dropped before it could take it.
    let dropped = queue.get();
    let next = queue.get_deferred();
    queue.try_put(1).unwrap(); // goes to `dropped`
    drop(dropped);
    assert_eq!(
        wait_for(&r, next).unwrap(),
        1,
        "passed on to the next getter"
    );
    // With nobody waiting, it goes back to the front.
    let dropped = queue.get();
    queue.try_put(2).unwrap();
    drop(dropped);
    assert_eq!(queue.try_get(), Some(2));
    // Getters that gave up are skipped.
    let timed_out = queue.get_deferred();
    timed_out.cancel();
    queue.try_put(3).unwrap();
    assert_eq!(queue.try_get(), Some(3));
    // A producer that gives up before there is room puts nothing.
    queue.try_put(4).unwrap();
    let gave_up = queue.put(5);
    let cancelled = queue.put_deferred(6);
    let kept = queue.put(7);
    drop(gave_up);
    cancelled.cancel();
    assert_eq!(queue.try_get(), Some(4));
    assert_eq!(queue.try_get(), Some(7));
    assert_eq!(queue.try_get(), None);
    drop(kept);
}

// ---------------------------------------------------------------------------------------
// TaskGroup.

/// Records, when dropped, that its task was cancelled (it never got further).
struct Cancelled(&'static str, Log);

impl Drop for Cancelled {
    fn drop(&mut self) {
        self.1.borrow_mut().push(format!("{} dropped", self.0));
    }
}

#[test]
fn join_waits_for_every_member_and_keeps_their_order() {
    let r = test_reactor();
    let group: TaskGroup<u64> = TaskGroup::new();
    for ms in [30u64, 10, 20] {
        group
            .spawn(async move {
                sleep(Duration::from_millis(ms)).await;
                Ok(ms)
            })
            .unwrap();
    }
    group
        .add(defer_later(&r, Duration::from_millis(5), || 5))
        .unwrap();
    let values = wait_for(&r, group.join()).unwrap();
    assert_eq!(values, [30, 10, 20, 5]);
    assert_eq!(group.running(), 0);
    let late = group.spawn(async { Ok(1) }).unwrap_err();
    assert_eq!(late.kind(), ErrorKind::InvalidInput);
    assert!(late.to_string().contains("has ended"), "{late}");
    assert_eq!(
        wait_for(&r, group.join()).unwrap_err().kind(),
        ErrorKind::InvalidInput,
        "one join"
    );
}

#[test]
fn the_first_failure_cancels_the_rest_and_join_fails_with_it() {
    let r = test_reactor();
    let log: Log = Rc::default();
    let group: TaskGroup = TaskGroup::new();
    let l = log.clone();
    group
        .spawn(async move {
            let _guard = Cancelled("sleeper", l);
            sleep(Duration::from_secs(3600)).await;
            Ok(())
        })
        .unwrap();
    let (pending, _resolver) = Deferred::<()>::new();
    group.add(pending).unwrap();
    group
        .spawn(async {
            YieldNow(false).await;
            Err(Error::new(ErrorKind::Other, "the first failure"))
        })
        .unwrap();
    let err = wait_for(&r, group.join()).unwrap_err();
    assert_eq!(err.to_string(), "the first failure");
    assert_eq!(*log.borrow(), ["sleeper dropped"]);
    assert_eq!(group.running(), 0, "join waited for the cancelled members");
    assert_eq!(r.pending_tasks(), 0);
    assert!(
        group.spawn(async { Ok(()) }).is_err(),
        "a failed group takes no more"
    );
}

#[test]
fn cancelling_the_task_that_joins_cancels_the_members() {
    let r = test_reactor();
    let log: Log = Rc::default();
    let l = log.clone();
    let parent = r.spawn(async move {
        let group: TaskGroup = TaskGroup::new();
        for name in ["a", "b"] {
            let l = l.clone();
            group
                .spawn(async move {
                    let _guard = Cancelled(name, l);
                    sleep(Duration::from_secs(3600)).await;
                    Ok(())
                })
                .unwrap();
        }
        group.join().await
    });
    r.run_until(PATIENCE, || r.pending_tasks() == 3).unwrap();
    settle(&r);
    parent.cancel();
    r.run_until(PATIENCE, || r.pending_tasks() == 0).unwrap();
    let mut dropped = log.borrow().clone();
    dropped.sort();
    assert_eq!(dropped, ["a dropped", "b dropped"]);
}

#[test]
fn dropping_a_group_nobody_joined_cancels_its_members() {
    let r = test_reactor();
    let log: Log = Rc::default();
    let group: TaskGroup = TaskGroup::new();
    let l = log.clone();
    group
        .spawn(async move {
            let _guard = Cancelled("orphan", l);
            sleep(Duration::from_secs(3600)).await;
            Ok(())
        })
        .unwrap();
    settle(&r);
    drop(group);
    assert_eq!(*log.borrow(), ["orphan dropped"]);
    assert_eq!(r.pending_tasks(), 0);
}

// ---------------------------------------------------------------------------------------
// as_completed and shared Deferreds.

#[test]
fn as_completed_gives_results_in_arrival_order_with_their_index() {
    let r = test_reactor();
    let clock = Clock::new();
    let inputs = vec![
        defer_later(&clock, Duration::from_secs(3), || 30),
        defer_later(&clock, Duration::from_secs(1), || 10)
            .try_map(|_| Err(Error::new(ErrorKind::Other, "input 1 failed"))),
        defer_later(&clock, Duration::from_secs(2), || 20),
    ];
    let mut outputs = as_completed(inputs).into_iter();
    let first = outputs.next().unwrap();
    let second = outputs.next().unwrap();
    let third = outputs.next().unwrap();
    second.cancel(); // its place goes to the next result
    clock.advance(Duration::from_secs(3));
    let (i, result) = wait_for(&r, first).unwrap();
    assert_eq!(
        (i, result.unwrap_err().to_string()),
        (1, "input 1 failed".to_string())
    );
    let (i, result) = wait_for(&r, third).unwrap();
    assert_eq!((i, result.unwrap()), (2, 20));
    assert!(as_completed(Vec::<Deferred<u8>>::new()).is_empty());
}

#[test]
fn a_shared_deferred_serves_every_consumer_and_one_giving_up_affects_no_other() {
    let r = test_reactor();
    let clock = Clock::new();
    let shared = defer_later(&clock, Duration::from_secs(1), || "value".to_string()).shared();
    let a = shared.get();
    let b = shared.get();
    let c = shared.get();
    b.cancel();
    clock.advance(Duration::from_secs(1));
    assert_eq!(wait_for(&r, a).unwrap(), "value");
    assert_eq!(wait_for(&r, c).unwrap(), "value");
    assert!(shared.is_fired());
    assert_eq!(
        wait_for(&r, shared.get()).unwrap(),
        "value",
        "a late consumer"
    );

    let failing: Deferred<u8> = Deferred::fail(Error::new(ErrorKind::Other, "no"))
        .shared()
        .get();
    assert_eq!(wait_for(&r, failing).unwrap_err().to_string(), "no");

    let (upstream, _resolver) = Deferred::<u8>::new();
    let shared = upstream.shared();
    let consumer = shared.get();
    shared.cancel();
    assert_eq!(
        wait_for(&r, consumer).unwrap_err().kind(),
        ErrorKind::Cancelled
    );
}
