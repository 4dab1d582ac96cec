//! [`as_completed`]: the results of several Deferreds in the order they arrive (asyncio's
//! `as_completed`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::Location;
use std::rc::Rc;

use crate::defer::deferred::{Deferred, DeferredError, Resolver};

/// The outputs still to fire, in order.
type Places<T, E> = Rc<RefCell<VecDeque<Resolver<(usize, Result<T, E>)>>>>;

/// One Deferred per input, in completion order: the first fires with the first result to
/// arrive, the second with the second, and so on. Each result comes with the index of its
/// input, and with its outcome, value or error (so one failure does not hide the others).
///
/// Await them in turn from async code, or chain on them from callbacks. Cancelling one of
/// them gives up that place: the result it would have had goes to the next one still
/// waiting. The inputs are not cancelled (cancel them yourself if you stop early).
///
/// ```
/// use std::time::Duration;
/// use torsion_reactor::{Reactor, as_completed, defer_later};
///
/// let reactor = Reactor::current();
/// let inputs = [30u64, 10, 20].map(|ms| {
///     defer_later(&reactor, Duration::from_millis(ms), move || ms)
/// });
/// let order = reactor
///     .run_until_complete(async move {
///         let mut order = Vec::new();
///         for next in as_completed(inputs) {
///             let (index, result) = next.await.unwrap();
///             order.push((index, result.unwrap()));
///         }
///         order
///     })
///     .unwrap();
/// assert_eq!(order, [(1, 10), (2, 20), (0, 30)]);
/// ```
#[track_caller]
pub fn as_completed<T, E, I>(deferreds: I) -> Vec<Deferred<(usize, Result<T, E>)>>
where
    T: 'static,
    E: DeferredError,
    I: IntoIterator<Item = Deferred<T, E>>,
{
    let origin = Location::caller();
    let inputs: Vec<Deferred<T, E>> = deferreds.into_iter().collect();
    let mut outputs = Vec::with_capacity(inputs.len());
    let mut places = VecDeque::with_capacity(inputs.len());
    for _ in 0..inputs.len() {
        let (d, resolver) = Deferred::new_at(origin);
        outputs.push(d);
        places.push_back(resolver);
    }
    let places: Places<T, E> = Rc::new(RefCell::new(places));
    for (index, input) in inputs.into_iter().enumerate() {
        let places = Rc::clone(&places);
        input.on_result(move |result| {
            // The next place still waiting (a cancelled one has fired already).
            let place = {
                let mut places = places.borrow_mut();
                loop {
                    match places.pop_front() {
                        Some(p) if p.is_fired() => continue,
                        other => break other,
                    }
                }
            };
            match place {
                Some(place) => place.resolve_quiet(Ok((index, result))),
                None => log::debug!(
                    "as_completed (created at {origin}): every output was cancelled; \
                     the result of input {index} is dropped"
                ),
            }
        });
    }
    outputs
}
