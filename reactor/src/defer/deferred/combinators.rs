//! Waiting for several Deferreds: [`gather`], [`settle`], [`race`] and [`first`].
//!
//! Each takes the Deferreds (their errors count as handled), keeps results in input order,
//! and returns one Deferred; cancelling it cancels every input still pending.

use std::cell::RefCell;
use std::panic::Location;
use std::rc::{Rc, Weak};

use super::{Cancel, Deferred, DeferredError, Resolver};
use crate::error::{Error, ErrorKind};

/// Weak handles on the inputs, to cancel them.
type Inputs = Rc<[Weak<dyn Cancel>]>;

/// Per-input results and how many are still missing.
type Pending<R> = Rc<RefCell<(Vec<Option<R>>, usize)>>;

fn pending<R>(n: usize) -> Pending<R> {
    Rc::new(RefCell::new(((0..n).map(|_| None).collect(), n)))
}

/// Stores input `i`'s outcome; once the last input has reported, takes them all, in input
/// order.
fn record<R>(slots: &Pending<R>, i: usize, outcome: R) -> Option<Vec<R>> {
    let mut st = slots.borrow_mut();
    st.0[i] = Some(outcome);
    st.1 -= 1;
    (st.1 == 0).then(|| st.0.drain(..).flatten().collect())
}

/// Prepares the output Deferred: cancelling it cancels the inputs.
fn combined<T, E, U, E2>(
    inputs: &[Deferred<T, E>],
    origin: &'static Location<'static>,
) -> (Deferred<U, E2>, Resolver<U, E2>, Inputs)
where
    T: 'static,
    E: DeferredError,
    U: 'static,
    E2: DeferredError,
{
    let (out, resolver) = Deferred::<U, E2>::new_at(origin);
    let weaks: Inputs = inputs.iter().map(|d| d.weak()).collect();
    let w = Rc::clone(&weaks);
    out.set_canceller(move |_| cancel_all(&w, None));
    (out, resolver, weaks)
}

fn cancel_all(weaks: &[Weak<dyn Cancel>], except: Option<usize>) {
    let targets: Vec<Rc<dyn Cancel>> = weaks
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != except)
        .filter_map(|(_, w)| w.upgrade())
        .collect();
    for target in targets {
        target.cancel_dyn();
    }
}

/// All the values, in input order, once every Deferred has succeeded; fails with the first
/// error to arrive (asyncio's `gather`, Twisted's `gatherResults`). The other Deferreds are
/// not cancelled when one fails, and errors after the first are dropped (logged at debug
/// level). An empty input gives an empty `Vec` at once.
///
/// ```
/// use std::{cell::RefCell, rc::Rc, time::Duration};
/// use torsion_reactor::{Deferred, Reactor, gather};
///
/// let (a, ra) = Deferred::<u32>::new();
/// let (b, rb) = Deferred::<u32>::new();
/// let out = Rc::new(RefCell::new(None));
/// let o = out.clone();
/// gather([a, b]).on_result(move |r| *o.borrow_mut() = Some(r.unwrap()));
/// rb.callback(2).unwrap();
/// ra.callback(1).unwrap();
/// Reactor::current().run_until(Duration::from_secs(5), || out.borrow().is_some());
/// assert_eq!(out.borrow_mut().take(), Some(vec![1, 2]));
/// ```
#[track_caller]
pub fn gather<T, E, I>(deferreds: I) -> Deferred<Vec<T>, E>
where
    T: 'static,
    E: DeferredError,
    I: IntoIterator<Item = Deferred<T, E>>,
{
    let inputs: Vec<Deferred<T, E>> = deferreds.into_iter().collect();
    let (out, resolver, _) = combined(&inputs, Location::caller());
    let n = inputs.len();
    if n == 0 {
        resolver.resolve_quiet(Ok(Vec::new()));
        return out;
    }
    let values = pending(n);
    for (i, d) in inputs.into_iter().enumerate() {
        let values = Rc::clone(&values);
        let resolver = resolver.clone();
        d.push_take(move |result| match result {
            Ok(v) => {
                if let Some(all) = record(&values, i, v) {
                    resolver.resolve_quiet(Ok(all));
                }
            }
            Err(e) => {
                if resolver.is_fired() {
                    log::debug!("gather: dropping a later error: {e:?}");
                } else {
                    resolver.resolve_quiet(Err(e));
                }
            }
        });
    }
    out
}

/// Every result, value or error, in input order, once all have fired (Twisted's
/// `DeferredList`, asyncio's `gather(return_exceptions=True)`): the collect-all variant of
/// [`gather`]. The returned Deferred fails only if it is cancelled.
#[track_caller]
pub fn settle<T, E, I>(deferreds: I) -> Deferred<Vec<Result<T, E>>, E>
where
    T: 'static,
    E: DeferredError,
    I: IntoIterator<Item = Deferred<T, E>>,
{
    let inputs: Vec<Deferred<T, E>> = deferreds.into_iter().collect();
    let (out, resolver, _) = combined(&inputs, Location::caller());
    let n = inputs.len();
    if n == 0 {
        resolver.resolve_quiet(Ok(Vec::new()));
        return out;
    }
    let results = pending(n);
    for (i, d) in inputs.into_iter().enumerate() {
        let results = Rc::clone(&results);
        let resolver = resolver.clone();
        d.push_take(move |result| {
            if let Some(all) = record(&results, i, result) {
                resolver.resolve_quiet(Ok(all));
            }
        });
    }
    out
}

fn nothing_to_wait_for<E: DeferredError>(what: &str) -> E {
    E::from(Error::new(
        ErrorKind::InvalidInput,
        format!("{what}() was given no Deferreds: there is nothing to wait for"),
    ))
}

/// The first value to arrive, with its index; the other Deferreds are then cancelled
/// (Twisted's `race`). If every one fails, fails with the error of the first in input
/// order. An empty input fails with [`ErrorKind::InvalidInput`].
#[track_caller]
pub fn race<T, E, I>(deferreds: I) -> Deferred<(usize, T), E>
where
    T: 'static,
    E: DeferredError,
    I: IntoIterator<Item = Deferred<T, E>>,
{
    let inputs: Vec<Deferred<T, E>> = deferreds.into_iter().collect();
    let (out, resolver, weaks) = combined(&inputs, Location::caller());
    let n = inputs.len();
    if n == 0 {
        resolver.resolve_quiet(Err(nothing_to_wait_for("race")));
        return out;
    }
    let errors = pending(n);
    for (i, d) in inputs.into_iter().enumerate() {
        let errors = Rc::clone(&errors);
        let resolver = resolver.clone();
        let weaks = Rc::clone(&weaks);
        d.push_take(move |result| match result {
            Ok(v) => {
                if !resolver.is_fired() {
                    resolver.resolve_quiet(Ok((i, v)));
                    cancel_all(&weaks, Some(i));
                }
            }
            Err(e) => {
                let first = record(&errors, i, e).and_then(|all| all.into_iter().next());
                if let Some(e) = first {
                    resolver.resolve_quiet(Err(e));
                }
            }
        });
    }
    out
}

/// The first result to arrive, value or error, with its index; the other Deferreds are
/// then cancelled (JavaScript's `Promise.race`). An empty input fails with
/// [`ErrorKind::InvalidInput`].
#[track_caller]
pub fn first<T, E, I>(deferreds: I) -> Deferred<(usize, T), E>
where
    T: 'static,
    E: DeferredError,
    I: IntoIterator<Item = Deferred<T, E>>,
{
    let inputs: Vec<Deferred<T, E>> = deferreds.into_iter().collect();
    let (out, resolver, weaks) = combined(&inputs, Location::caller());
    if inputs.is_empty() {
        resolver.resolve_quiet(Err(nothing_to_wait_for("first")));
        return out;
    }
    for (i, d) in inputs.into_iter().enumerate() {
        let resolver = resolver.clone();
        let weaks = Rc::clone(&weaks);
        d.push_take(move |result| {
            if !resolver.is_fired() {
                resolver.resolve_quiet(result.map(|v| (i, v)));
                cancel_all(&weaks, Some(i));
            }
        });
    }
    out
}
