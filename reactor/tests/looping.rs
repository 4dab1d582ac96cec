//! The task module: LoopingCall (intervals, skip counting, stop, failure) and cooperate.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{PATIENCE, collect, reactor, wait};
use torsion_reactor::{Clock, Cooperator, Error, ErrorKind, LoopingCall, TaskState, cooperate};

const SEC: Duration = Duration::from_secs(1);

/// (elapsed seconds on the clock, intervals) for each call.
type Calls = Rc<RefCell<Vec<(f64, u64)>>>;

/// A LoopingCall that records its calls.
fn recorder(clock: &Clock) -> (LoopingCall, Calls) {
    let calls = Rc::new(RefCell::new(Vec::new()));
    let (c, k) = (calls.clone(), clock.clone());
    let lc = LoopingCall::with_count(move |n| {
        c.borrow_mut().push((k.elapsed().as_secs_f64(), n));
        Ok(())
    });
    (lc, calls)
}

#[test]
fn calls_every_interval_now_or_after_one_interval() {
    let clock = Clock::new();
    let (lc, calls) = recorder(&clock);
    let done = collect(lc.start_on(clock.clone(), SEC, true).unwrap());
    assert_eq!(*calls.borrow(), [(0.0, 1)], "now = true calls inside start");
    clock.pump(&[SEC, SEC, Duration::from_millis(500)]);
    assert_eq!(*calls.borrow(), [(0.0, 1), (1.0, 1), (2.0, 1)]);
    assert!(lc.running());
    lc.stop().unwrap();
    assert!(!lc.running());
    assert_eq!(clock.pending(), 0, "stop cancels the next call");
    wait(&done).unwrap();

    let clock = Clock::new();
    let (lc, calls) = recorder(&clock);
    let _done = lc.start_on(clock.clone(), SEC, false).unwrap();
    assert!(calls.borrow().is_empty());
    // On a Clock, a jump runs every missed call at its own time (as a reactor would
    // have): nothing is skipped when the calls themselves are quick.
    clock.advance(Duration::from_millis(3500));
    assert_eq!(*calls.borrow(), [(1.0, 1), (2.0, 1), (3.0, 1)]);
    lc.stop().unwrap();
}

#[test]
fn overrunning_calls_skip_intervals_and_report_the_count() {
    let clock = Clock::new();
    let calls = Rc::new(RefCell::new(Vec::new()));
    let (c, k) = (calls.clone(), clock.clone());
    let lc = LoopingCall::with_count(move |n| {
        let at = k.elapsed().as_secs_f64();
        c.borrow_mut().push((at, n));
        if at == 2.0 {
            k.advance(Duration::from_millis(3200)); // this call takes 3.2 s
        }
        Ok(())
    });
    let _done = lc.start_on(clock.clone(), SEC, true).unwrap();
    clock.advance(Duration::from_secs(10));
    // 0, 1, 2 (runs until 5.2: 3, 4 and 5 are skipped), then 6 with 4 intervals, 7, ...
    assert_eq!(
        calls.borrow()[..6],
        [(0.0, 1), (1.0, 1), (2.0, 1), (6.0, 4), (7.0, 1), (8.0, 1)]
    );
    lc.stop().unwrap();
}

#[test]
fn overrunning_calls_are_counted_on_the_real_reactor_too() {
    let r = reactor();
    let counts = Rc::new(RefCell::new(Vec::new()));
    let c = counts.clone();
    let lc = LoopingCall::with_count(move |n| {
        c.borrow_mut().push(n);
        if c.borrow().len() == 1 {
            // A slow call: blocks the loop for at least three intervals.
            let until = Instant::now() + Duration::from_millis(70);
            while Instant::now() < until {
                std::thread::yield_now();
            }
        }
        Ok(())
    });
    let _done = lc.start(Duration::from_millis(20), true).unwrap();
    r.run_until(PATIENCE, || counts.borrow().len() >= 2)
        .unwrap();
    lc.stop().unwrap();
    assert!(counts.borrow()[1] >= 3, "{:?}", counts.borrow());
}

#[test]
fn stop_start_and_reset_rules() {
    let clock = Clock::new();
    let (lc, calls) = recorder(&clock);
    assert!(matches!(
        lc.stop().unwrap_err().kind(),
        ErrorKind::NotRunning
    ));
    let first = collect(lc.start_on(clock.clone(), SEC, false).unwrap());
    let again = lc.start_on(clock.clone(), SEC, false).unwrap_err();
    assert!(matches!(again.kind(), ErrorKind::AlreadyRunning));
    clock.advance(Duration::from_millis(500));
    lc.reset().unwrap(); // the grid restarts at 0.5
    clock.advance(Duration::from_millis(900));
    assert!(calls.borrow().is_empty());
    clock.advance(Duration::from_millis(100));
    assert_eq!(*calls.borrow(), [(1.5, 1)]);
    lc.stop().unwrap();
    wait(&first).unwrap();

    // Restarted after a stop, with a new Deferred.
    let second = collect(lc.start_on(clock.clone(), SEC, true).unwrap());
    assert_eq!(calls.borrow().len(), 2);
    assert_eq!(lc.call_count(), 2);

    // Stopped from inside its own function.
    let clock2 = Clock::new();
    let holder: Rc<RefCell<Option<LoopingCall>>> = Rc::new(RefCell::new(None));
    let h = holder.clone();
    let n = Rc::new(Cell::new(0));
    let n2 = n.clone();
    let lc2 = LoopingCall::new(move || {
        n2.set(n2.get() + 1);
        if n2.get() == 3 {
            let me = h.borrow().clone();
            if let Some(me) = me {
                me.stop()?;
            }
        }
        Ok(())
    });
    *holder.borrow_mut() = Some(lc2.clone());
    let done = collect(lc2.start_on(clock2.clone(), SEC, true).unwrap());
    clock2.advance(Duration::from_secs(10));
    assert_eq!(n.get(), 3);
    assert_eq!(clock2.pending(), 0);
    wait(&done).unwrap();
    holder.borrow_mut().take();

    lc.stop().unwrap();
    wait(&second).unwrap();
}

#[test]
fn a_failing_call_stops_the_loop_with_its_error() {
    let clock = Clock::new();
    let n = Rc::new(Cell::new(0));
    let n2 = n.clone();
    let lc = LoopingCall::new(move || {
        n2.set(n2.get() + 1);
        if n2.get() == 2 {
            Err(Error::new(ErrorKind::Other, "second call failed"))
        } else {
            Ok(())
        }
    });
    let done = collect(lc.start_on(clock.clone(), SEC, true).unwrap());
    clock.advance(Duration::from_secs(5));
    assert_eq!(n.get(), 2);
    assert!(!lc.running());
    assert_eq!(clock.pending(), 0);
    assert_eq!(wait(&done).unwrap_err().message(), "second call failed");

    let lc = LoopingCall::new(|| -> Result<(), torsion_reactor::Error> { panic!("looping-panic") });
    let done = collect(lc.start_on(clock.clone(), SEC, true).unwrap());
    let err = wait(&done).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Panicked));
    assert!(err.to_string().contains("looping-panic"));
}

#[test]
fn cooperator_slices_round_robin_on_a_clock() {
    let clock = Clock::new();
    let coop = Cooperator::with_scheduler(clock.clone());
    coop.set_tick_delay(SEC);
    coop.set_max_steps(4);
    let log = Rc::new(RefCell::new(Vec::new()));
    let (la, lb) = (log.clone(), log.clone());
    let a = coop.cooperate((0..3).map(move |i| la.borrow_mut().push(format!("a{i}"))));
    let b = coop.cooperate((0..5).map(move |i| lb.borrow_mut().push(format!("b{i}"))));
    let a_done = collect(a.when_done());
    assert!(log.borrow().is_empty(), "nothing runs inside cooperate()");
    clock.advance(SEC);
    assert_eq!(*log.borrow(), ["a0", "b0", "a1", "b1"]);
    clock.advance(SEC);
    // a's iterator is exhausted on its fourth step.
    assert_eq!(log.borrow()[4..], ["a2", "b2", "b3"]);
    assert_eq!(a.state(), TaskState::Done);
    wait(&a_done).unwrap();

    b.pause().unwrap();
    b.pause().unwrap();
    clock.advance(SEC);
    assert_eq!(log.borrow().len(), 7, "paused");
    b.resume().unwrap();
    clock.advance(SEC);
    assert_eq!(log.borrow().len(), 7, "paused twice, resumed once");
    b.resume().unwrap();
    assert!(matches!(
        b.resume().unwrap_err().kind(),
        ErrorKind::InvalidInput
    ));
    clock.advance(SEC);
    assert_eq!(log.borrow()[7..], ["b4"]);
    clock.advance(SEC);
    assert_eq!(b.state(), TaskState::Done);
    assert_eq!(coop.tasks(), 0);
    assert_eq!(
        clock.pending(),
        0,
        "no slices scheduled when there is no work"
    );
    assert!(wait(&collect(b.when_done())).is_ok());
}

#[test]
fn cooperative_tasks_stop_and_fail() {
    let clock = Clock::new();
    let coop = Cooperator::with_scheduler(clock.clone());
    coop.set_tick_delay(SEC);
    coop.set_max_steps(1);
    let endless = coop.cooperate(0u64..);
    let done = collect(endless.when_done());
    clock.advance(SEC);
    endless.stop().unwrap();
    assert!(matches!(
        endless.stop().unwrap_err().kind(),
        ErrorKind::NotRunning
    ));
    assert!(matches!(
        wait(&done).unwrap_err().kind(),
        ErrorKind::Cancelled
    ));

    let broken = coop.cooperate((0..10).map(|i| {
        if i == 1 {
            panic!("iterator-panic");
        }
    }));
    let done = collect(broken.when_done());
    clock.pump(&[SEC; 3]);
    assert_eq!(broken.state(), TaskState::Failed);
    let err = wait(&done).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Panicked));
    assert!(err.to_string().contains("iterator-panic"));

    let one = coop.cooperate(0..100);
    let two = coop.cooperate(0..100);
    let (d1, d2) = (collect(one.when_done()), collect(two.when_done()));
    coop.stop();
    assert!(wait(&d1).is_err() && wait(&d2).is_err());
}

#[test]
fn a_long_cooperative_task_leaves_the_loop_responsive() {
    let r = reactor();
    let steps = Rc::new(Cell::new(0u64));
    let s = steps.clone();
    let endless = cooperate((0u64..).map(move |_| s.set(s.get() + 1)));
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    r.call_later(Duration::from_millis(30), move || f.set(true));
    r.run_until(PATIENCE, || fired.get())
        .expect("the timer fired meanwhile");
    assert!(steps.get() > 0);
    assert_eq!(endless.state(), TaskState::Running);
    let done = collect(endless.when_done());
    endless.stop().unwrap();
    assert!(matches!(
        wait(&done).unwrap_err().kind(),
        ErrorKind::Cancelled
    ));
}

// ---------------------------------------------------------------------------------------
// Functions that return a Deferred or a future: the next call waits for them.

/// A LoopingCall whose calls each take `takes` on the clock (a Deferred fired by a timer),
/// recording when they start.
fn slow_recorder(clock: &Clock, takes: Duration) -> (LoopingCall, Rc<RefCell<Vec<f64>>>) {
    let starts = Rc::new(RefCell::new(Vec::new()));
    let (s, k) = (starts.clone(), clock.clone());
    let lc = LoopingCall::new_deferred(move || {
        s.borrow_mut().push(k.elapsed().as_secs_f64());
        torsion_reactor::defer_later(&k, takes, || ())
    });
    (lc, starts)
}

#[test]
fn the_next_call_waits_for_the_deferred_then_keeps_to_the_grid() {
    let clock = Clock::new();
    // Twisted's rule: a call that finishes at 2.5 s with a 1 s interval is followed by one
    // at 3 s.
    let (lc, starts) = slow_recorder(&clock, Duration::from_millis(2500));
    let done = collect(lc.start_on(clock.clone(), SEC, true).unwrap());
    clock.advance(Duration::from_secs(7));
    assert_eq!(*starts.borrow(), [0.0, 3.0, 6.0]);
    lc.stop().unwrap(); // during the call that started at 6 s
    clock.advance(SEC); // 8 s
    assert!(
        done.borrow().is_none(),
        "stop waits for the call in progress"
    );
    clock.advance(Duration::from_millis(500)); // it finishes at 8.5 s
    assert!(matches!(*done.borrow(), Some(Ok(()))));
    assert_eq!(starts.borrow().len(), 3, "no call after stop");
}

#[test]
fn a_failed_deferred_stops_the_loop_with_its_error() {
    let clock = Clock::new();
    let calls = Rc::new(Cell::new(0));
    let (c, k) = (calls.clone(), clock.clone());
    let lc = LoopingCall::new_deferred(move || {
        c.set(c.get() + 1);
        torsion_reactor::defer_later(&k, SEC, || ())
            .try_map(|()| Err(Error::new(ErrorKind::Other, "the job failed")))
    });
    let done = collect(lc.start_on(clock.clone(), SEC, true).unwrap());
    clock.advance(Duration::from_secs(5));
    let err = done.borrow_mut().take().unwrap().unwrap_err();
    assert_eq!(err.to_string(), "the job failed");
    assert_eq!(calls.get(), 1);
    assert!(!lc.running());
}

#[test]
fn a_stopped_loop_whose_call_is_still_running_cannot_start_again_yet() {
    let clock = Clock::new();
    let (lc, _) = slow_recorder(&clock, Duration::from_secs(3));
    let _done = lc.start_on(clock.clone(), SEC, true).unwrap();
    lc.stop().unwrap();
    let err = lc.start_on(clock.clone(), SEC, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyRunning);
    clock.advance(Duration::from_secs(3));
    let _again = lc
        .start_on(clock.clone(), SEC, true)
        .expect("the call finished");
    lc.stop().unwrap();
}

#[test]
fn an_async_function_runs_as_a_task_and_calls_never_overlap() {
    let r = reactor();
    let busy = Rc::new(Cell::new(false));
    let (overlaps, calls) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let (b, o, n) = (busy.clone(), overlaps.clone(), calls.clone());
    let lc = LoopingCall::new_async(move || {
        let (b, o, n) = (b.clone(), o.clone(), n.clone());
        async move {
            if b.replace(true) {
                o.set(o.get() + 1);
            }
            torsion_reactor::sleep(Duration::from_millis(5)).await;
            b.set(false);
            n.set(n.get() + 1);
            if n.get() == 3 {
                return Err(Error::new(ErrorKind::Other, "third call fails"));
            }
            Ok(())
        }
    });
    let done = lc.start(Duration::from_millis(1), true).unwrap();
    let err = wait(&collect(done)).unwrap_err();
    assert_eq!(err.to_string(), "third call fails");
    assert_eq!((calls.get(), overlaps.get()), (3, 0));
    r.run_until(PATIENCE, || r.pending_tasks() == 0).unwrap();
}
