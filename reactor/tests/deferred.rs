//! Deferred: callback order, chaining, typed errors, double fire, cancellation, timeouts,
//! unhandled-error logging, abandoned resolvers and the combinators.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use std::time::Duration;

use common::{PATIENCE, logged, logs, reactor};
use torsion_reactor::{
    Clock, Deferred, Error, ErrorKind, Reactor, defer_later, first, gather, race, settle,
};

type Slot<T, E = Error> = Rc<RefCell<Option<Result<T, E>>>>;

/// Takes the Deferred's result into a slot.
fn collect<T: 'static, E: torsion_reactor::DeferredError>(d: Deferred<T, E>) -> Slot<T, E> {
    let slot: Slot<T, E> = Rc::new(RefCell::new(None));
    let s = slot.clone();
    d.on_result(move |r| *s.borrow_mut() = Some(r));
    slot
}

/// Runs the reactor until the slot is filled, and returns the result.
fn wait<T, E>(slot: &Slot<T, E>) -> Result<T, E> {
    Reactor::current()
        .run_until(PATIENCE, || slot.borrow().is_some())
        .expect("the Deferred did not fire in time");
    slot.borrow_mut().take().unwrap()
}

#[derive(Debug, PartialEq)]
enum AppError {
    NotFound(String),
    Torsion(String),
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Torsion(format!("{:?}", e.kind()))
    }
}

#[test]
fn callbacks_before_and_after_firing_run_in_order_and_never_synchronously() {
    let r = reactor();
    let log = Rc::new(RefCell::new(Vec::new()));
    let (d, resolver) = Deferred::<u32>::new();
    let l = log.clone();
    let d = d.inspect(move |v| l.borrow_mut().push(format!("before {:?}", v.as_ref().ok())));
    resolver.callback(7).unwrap();
    assert!(log.borrow().is_empty(), "firing runs no callback");
    let l = log.clone();
    let d = d.inspect(move |_| l.borrow_mut().push("after".into()));
    let l = log.clone();
    let d = d.finally(move || l.borrow_mut().push("finally".into()));
    let l = log.clone();
    d.on_result(move |v| l.borrow_mut().push(format!("last {}", v.unwrap())));
    assert!(
        log.borrow().is_empty(),
        "adding to a fired Deferred runs nothing at once"
    );
    r.run_until(PATIENCE, || log.borrow().len() == 4).unwrap();
    assert_eq!(
        *log.borrow(),
        ["before Some(7)", "after", "finally", "last 7"]
    );

    // Adding to an already-fired Deferred: still from the loop, not in the adder's stack.
    let d = Deferred::<u32>::succeed(1);
    let ran = Rc::new(Cell::new(false));
    let x = ran.clone();
    d.on_result(move |_| x.set(true));
    assert!(!ran.get());
    r.run_until(PATIENCE, || ran.get()).unwrap();
}

#[test]
fn chaining_with_nested_deferreds_and_typed_errors() {
    let r = reactor();
    // Values flow through map / try_map / and_then (waiting for an inner Deferred fired
    // later by a timer).
    let (d, resolver) = Deferred::<u32>::new();
    let chained = d
        .map(|n| n + 1)
        .try_map(|n| Ok(n * 10))
        .and_then(move |n| {
            let (inner, inner_resolver) = Deferred::<String>::new();
            Reactor::current().call_later(Duration::from_millis(5), move || {
                inner_resolver.callback(format!("<{n}>")).unwrap();
            });
            inner
        })
        .map(|s| s.len());
    resolver.callback(1).unwrap();
    assert_eq!(wait(&collect(chained)).unwrap(), 4); // "<20>"

    // An error skips map/and_then, is converted by map_err and recovered by or_else.
    let (d, resolver) = Deferred::<u32>::new();
    let skipped = Rc::new(Cell::new(false));
    let s1 = skipped.clone();
    let s2 = skipped.clone();
    let recovered = d
        .map(move |n| {
            s1.set(true);
            n
        })
        .and_then(move |n| {
            s2.set(true);
            Deferred::succeed(n)
        })
        .map_err(|e: Error| AppError::NotFound(e.message().to_string()))
        .or_else(|e| match e {
            AppError::NotFound(what) => Deferred::<u32, AppError>::succeed(what.len() as u32),
            other => Deferred::fail(other),
        });
    resolver
        .errback(Error::new(ErrorKind::Other, "abc"))
        .unwrap();
    assert_eq!(wait(&collect(recovered)), Ok(3));
    assert!(!skipped.get());

    // try_map switches to the error path; `then` sees both and can switch back.
    let failed = Deferred::<u32>::succeed(5)
        .try_map(|_| Err::<u32, _>(Error::new(ErrorKind::InvalidInput, "bad")))
        .map(|n| n + 1);
    let err = wait(&collect(failed)).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::InvalidInput));
    let back = Deferred::<u32>::fail(Error::new(ErrorKind::Other, "x"))
        .then(|r| Ok::<_, Error>(r.is_err()));
    assert!(wait(&collect(back)).unwrap());

    // A custom error type carries torsion's own failures through From<Error>.
    let (d, _resolver) = Deferred::<u32, AppError>::new();
    let slot = collect(d.map(|n| n));
    drop(_resolver);
    assert_eq!(
        wait(&slot),
        Err(AppError::Torsion("Abandoned".into())),
        "a Deferred whose every resolver is gone fails with Abandoned"
    );
    let _ = r;
}

#[test]
fn long_chains_complete_within_one_iteration() {
    let r = reactor();
    r.iterate(Duration::ZERO).unwrap(); // flush leftovers of other tests on this thread
    let mut d = Deferred::<u64>::succeed(0);
    for _ in 0..500 {
        d = d.map(|n| n + 1);
    }
    let slot = collect(d);
    r.iterate(Duration::ZERO).unwrap();
    assert_eq!(slot.borrow_mut().take().map(|r| r.unwrap()), Some(500));
}

#[test]
fn firing_twice_is_a_typed_error_and_after_cancel_is_quiet() {
    let (d, resolver) = Deferred::<u32>::new();
    resolver.callback(1).unwrap();
    let err = resolver.callback(2).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::AlreadyFired));
    let err = resolver
        .errback(Error::new(ErrorKind::Other, "late"))
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::AlreadyFired));
    assert!(err.to_string().contains("deferred.rs"), "{err}");
    assert_eq!(wait(&collect(d)).unwrap(), 1);

    let (d, resolver) = Deferred::<u32>::new();
    d.cancel();
    assert!(resolver.is_cancelled());
    resolver.callback(3).unwrap(); // the producer need not know it was cancelled
    let err = wait(&collect(d)).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Cancelled));
}

#[test]
fn cancel_runs_the_canceller_and_propagates_down_chains() {
    // The canceller runs and the Deferred fails with Cancelled.
    let called = Rc::new(Cell::new(0));
    let c = called.clone();
    let (d, _resolver) = Deferred::<u32>::with_canceller(move |_| c.set(c.get() + 1));
    d.cancel();
    d.cancel(); // no-op: fired already
    assert_eq!(called.get(), 1);
    let err = wait(&collect(d)).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Cancelled));

    // A canceller may fire a result of its own, which wins.
    let (d, _resolver) = Deferred::<u32>::with_canceller(|r| r.callback(99).unwrap());
    d.cancel();
    assert_eq!(wait(&collect(d)).unwrap(), 99);

    // Cancelling a fired Deferred is a no-op, the canceller is not called.
    let c = called.clone();
    let (d, resolver) = Deferred::<u32>::with_canceller(move |_| c.set(c.get() + 1));
    resolver.callback(5).unwrap();
    d.cancel();
    assert_eq!(called.get(), 1);
    assert_eq!(wait(&collect(d)).unwrap(), 5);

    // Cancelling the end of a chain cancels the step it waits on: first the source...
    let c = called.clone();
    let (src, _resolver) = Deferred::<u32>::with_canceller(move |_| c.set(c.get() + 1));
    let end = src.map(|n| n + 1).map(|n| n * 2);
    end.cancel();
    assert_eq!(called.get(), 2);
    let err = wait(&collect(end)).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Cancelled));

    // ...then, once and_then returned an inner Deferred, the inner one.
    let inner_cancelled = Rc::new(Cell::new(false));
    let ic = inner_cancelled.clone();
    let (src, resolver) = Deferred::<u32>::new();
    let keep = Rc::new(RefCell::new(None));
    let k = keep.clone();
    let end = src.and_then(move |_| {
        let ic = ic.clone();
        let (inner, inner_resolver) = Deferred::<u32>::with_canceller(move |_| ic.set(true));
        *k.borrow_mut() = Some(inner_resolver);
        inner
    });
    resolver.callback(1).unwrap();
    reactor()
        .run_until(PATIENCE, || keep.borrow().is_some())
        .unwrap();
    end.cancel();
    assert!(inner_cancelled.get());
    let err = wait(&collect(end)).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Cancelled));
}

#[test]
fn with_timeout_on_a_clock() {
    let clock = Clock::new();
    // No result in time: the source is cancelled (its canceller runs), TimedOut comes out.
    let cancelled = Rc::new(Cell::new(false));
    let c = cancelled.clone();
    let (d, _resolver) = Deferred::<u32>::with_canceller(move |_| c.set(true));
    let slot = collect(d.with_timeout_on(&clock, Duration::from_secs(5)));
    clock.advance(Duration::from_millis(4999));
    assert!(!cancelled.get());
    clock.advance(Duration::from_millis(1));
    assert!(cancelled.get());
    let err = wait(&slot).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::TimedOut), "{err:?}");

    // A result first: it passes through and the timer is gone.
    let (d, resolver) = Deferred::<u32>::new();
    let slot = collect(d.with_timeout_on(&clock, Duration::from_secs(5)));
    assert_eq!(clock.pending(), 1);
    resolver.callback(8).unwrap();
    assert_eq!(wait(&slot).unwrap(), 8);
    assert_eq!(clock.pending(), 0, "the timeout's timer was cancelled");

    // An error that is not the timeout's stays what it was.
    let (d, resolver) = Deferred::<u32>::new();
    let slot = collect(d.with_timeout_on(&clock, Duration::from_secs(5)));
    resolver
        .errback(Error::new(ErrorKind::InvalidInput, "nope"))
        .unwrap();
    clock.advance(Duration::from_secs(10));
    assert!(matches!(
        wait(&slot).unwrap_err().kind(),
        ErrorKind::InvalidInput
    ));

    // On the reactor's own time.
    let (d, _resolver) = Deferred::<u32>::new();
    let slot = collect(d.with_timeout(Duration::from_millis(10)));
    assert!(matches!(
        wait(&slot).unwrap_err().kind(),
        ErrorKind::TimedOut
    ));
}

#[test]
fn defer_later_fires_from_a_timer_and_cancel_cancels_the_timer() {
    let clock = Clock::new();
    let slot = collect(defer_later(&clock, Duration::from_secs(3), || "later"));
    clock.advance(Duration::from_secs(2));
    reactor().iterate(Duration::ZERO).unwrap();
    assert!(slot.borrow().is_none());
    clock.advance(Duration::from_secs(1));
    assert_eq!(wait(&slot).unwrap(), "later");

    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let d = defer_later(&clock, Duration::from_secs(3), move || r.set(true));
    assert_eq!(clock.pending(), 1);
    d.cancel();
    assert_eq!(clock.pending(), 0);
    clock.advance(Duration::from_secs(5));
    assert!(!ran.get());
    assert!(matches!(
        wait(&collect(d)).unwrap_err().kind(),
        ErrorKind::Cancelled
    ));

    let d = defer_later(&clock, Duration::ZERO, || -> u32 {
        panic!("boom in defer_later")
    });
    clock.advance(Duration::ZERO);
    let err = wait(&collect(d)).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Panicked));
    assert!(err.to_string().contains("boom in defer_later"));
}

#[test]
fn unhandled_errors_are_logged_with_their_origin() {
    logs();
    let r = reactor();
    r.set_fail_on_caught(false); // the unhandled errors are the point here
    // Nobody takes the error: logged when the last handle goes.
    let ((d, resolver), line) = (Deferred::<u32>::new(), line!());
    resolver
        .errback(Error::new(ErrorKind::Other, "unhandled-marker-1"))
        .unwrap();
    drop(resolver);
    drop(d);
    let lines = logged("unhandled-marker-1");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("ERROR Unhandled error"), "{lines:?}");
    assert!(
        lines[0].contains(&format!("deferred.rs:{line}")),
        "names where the Deferred was created: {lines:?}"
    );

    // Watching is not handling: an inspect()ed error is still reported, after it ran.
    let seen = Rc::new(Cell::new(false));
    let s = seen.clone();
    Deferred::<u32>::fail(Error::new(ErrorKind::Other, "unhandled-marker-2"))
        .inspect(move |_| s.set(true));
    r.run_until(PATIENCE, || seen.get()).unwrap();
    r.iterate(Duration::ZERO).unwrap();
    assert_eq!(logged("unhandled-marker-2").len(), 1);

    // Handled errors, and errors made by cancel(), are not reported.
    let handled = collect(Deferred::<u32>::fail(Error::new(
        ErrorKind::Other,
        "handled-marker-3",
    )));
    assert!(wait(&handled).is_err());
    let (d, _resolver) = Deferred::<u32>::new();
    d.cancel();
    drop(d);
    drop(_resolver);
    assert!(logged("handled-marker-3").is_empty());
    assert!(
        logged("Unhandled error")
            .iter()
            .all(|l| !l.contains("was cancelled")),
        "a cancelled Deferred is not an unhandled error"
    );
}

#[test]
fn a_panicking_callback_fails_the_next_step_and_the_reactor_goes_on() {
    let r = reactor();
    let d = Deferred::<u32>::succeed(1).map(|_| -> u32 { panic!("panic-in-map") });
    let err = wait(&collect(d)).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Panicked));
    assert!(err.to_string().contains("panic-in-map"));

    // A panic in a terminal callback is logged; later callbacks still run.
    Deferred::<u32>::succeed(1).on_result(|_| panic!("panic-in-on-result"));
    let after = Rc::new(Cell::new(false));
    let a = after.clone();
    Deferred::<u32>::succeed(2).on_result(move |_| a.set(true));
    let err = r.run_until(PATIENCE, || after.get()).unwrap_err();
    assert!(
        err.to_string().contains("panic-in-on-result"),
        "the test reactor reports the caught panic: {err}"
    );
    assert!(after.get(), "the later callback ran in the same drain");
}

#[test]
fn gather_collects_in_order_and_fails_with_the_first_error() {
    let (a, ra) = Deferred::<u32>::new();
    let (b, rb) = Deferred::<u32>::new();
    let (c, rc) = Deferred::<u32>::new();
    let slot = collect(gather([a, b, c]));
    rc.callback(3).unwrap();
    ra.callback(1).unwrap();
    reactor().iterate(Duration::ZERO).unwrap();
    assert!(slot.borrow().is_none());
    rb.callback(2).unwrap();
    assert_eq!(wait(&slot).unwrap(), [1, 2, 3]);

    let (a, ra) = Deferred::<u32>::new();
    let (b, rb) = Deferred::<u32>::new();
    let slot = collect(gather([a, b]));
    rb.errback(Error::new(ErrorKind::InvalidInput, "second failed"))
        .unwrap();
    let err = wait(&slot).unwrap_err();
    assert_eq!(err.message(), "second failed");
    ra.errback(Error::new(ErrorKind::Other, "a later error"))
        .unwrap();

    assert!(
        wait(&collect(gather(Vec::<Deferred<u32>>::new())))
            .unwrap()
            .is_empty()
    );

    // Cancelling the gathered Deferred cancels the inputs.
    let flags: Vec<Rc<Cell<bool>>> = (0..3).map(|_| Rc::new(Cell::new(false))).collect();
    let mut keep = Vec::new();
    let inputs: Vec<Deferred<u32>> = flags
        .iter()
        .map(|f| {
            let f = f.clone();
            let (d, r) = Deferred::with_canceller(move |_| f.set(true));
            keep.push(r);
            d
        })
        .collect();
    let all = gather(inputs);
    all.cancel();
    assert!(flags.iter().all(|f| f.get()));
    assert!(matches!(
        wait(&collect(all)).unwrap_err().kind(),
        ErrorKind::Cancelled
    ));
}

#[test]
fn settle_keeps_every_result() {
    let (a, ra) = Deferred::<u32>::new();
    let b = Deferred::<u32>::fail(Error::new(ErrorKind::Other, "b failed"));
    let c = Deferred::<u32>::succeed(3);
    let slot = collect(settle([a, b, c]));
    ra.callback(1).unwrap();
    let all = wait(&slot).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(*all[0].as_ref().unwrap(), 1);
    assert_eq!(all[1].as_ref().unwrap_err().message(), "b failed");
    assert_eq!(*all[2].as_ref().unwrap(), 3);
    assert!(logged("b failed").is_empty(), "settle handles the errors");
}

#[test]
fn race_takes_the_first_success_and_cancels_the_rest() {
    let clock = Clock::new();
    let slow = defer_later(&clock, Duration::from_secs(10), || 1u32);
    let failing = Deferred::<u32>::fail(Error::new(ErrorKind::Other, "fails fast"));
    let fast = defer_later(&clock, Duration::from_secs(2), || 2u32);
    let slot = collect(race([slow, failing, fast]));
    assert_eq!(clock.pending(), 2);
    clock.advance(Duration::from_secs(2));
    assert_eq!(wait(&slot).unwrap(), (2, 2));
    assert_eq!(clock.pending(), 0, "the slow one was cancelled");

    // All fail: the first error in input order.
    let slot = collect(race([
        Deferred::<u32>::fail(Error::new(ErrorKind::Other, "e0")),
        Deferred::<u32>::fail(Error::new(ErrorKind::Other, "e1")),
    ]));
    assert_eq!(wait(&slot).unwrap_err().message(), "e0");

    let err = wait(&collect(race(Vec::<Deferred<u32>>::new()))).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::InvalidInput));
}

#[test]
fn first_takes_the_first_result_either_way() {
    let clock = Clock::new();
    let slow = defer_later(&clock, Duration::from_secs(10), || 1u32);
    let (fails, r) = Deferred::<u32>::new();
    let slot = collect(first([slow, fails]));
    r.errback(Error::new(ErrorKind::Other, "first to arrive"))
        .unwrap();
    assert_eq!(wait(&slot).unwrap_err().message(), "first to arrive");
    assert_eq!(clock.pending(), 0, "the other was cancelled");
}
