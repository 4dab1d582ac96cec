//! System event triggers: callbacks that run at every `run()`'s startup and shutdown
//! (Twisted's `addSystemEventTrigger`).

use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::rc::Rc;

use super::{Reactor, callback};
use crate::defer::deferred::Deferred;

/// The two system events servers hook into (Twisted's `startup` and `shutdown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemEvent {
    /// `run()` is starting.
    Startup,
    /// `run()` is stopping.
    Shutdown,
}

/// When a trigger runs relative to its event.
///
/// For shutdown: `Before` runs while every connection is still open (say goodbye to clients
/// here); then connections are flushed and closed; then `During`, then `After`.
/// For startup: all three run, in order, before the first loop iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Runs first: at shutdown, while connections are still open.
    Before,
    /// Runs after `Before`: at shutdown, once connections are closed.
    During,
    /// Runs after `During`, last (the thread pool stops here).
    After,
}

/// Identifies a trigger added with [`Reactor::add_system_event_trigger`], to remove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TriggerId(u64);

type TriggerFn = Rc<RefCell<dyn FnMut()>>;

struct Trigger {
    id: TriggerId,
    event: SystemEvent,
    phase: Phase,
    f: TriggerFn,
    origin: &'static Location<'static>,
}

#[derive(Default)]
pub(super) struct Triggers {
    list: RefCell<Vec<Trigger>>,
    next: Cell<u64>,
    /// Deferreds returned by shutdown hooks that have not fired yet: the shutdown waits.
    holds: Rc<Cell<usize>>,
}

impl Triggers {
    /// Runs the triggers of `event` and `phase`, in the order they were added. A trigger
    /// added or removed by one of them takes effect at the next firing.
    pub(super) fn fire(&self, event: SystemEvent, phase: Phase) {
        let due: Vec<(TriggerFn, &'static Location<'static>)> = self
            .list
            .borrow()
            .iter()
            .filter(|t| t.event == event && t.phase == phase)
            .map(|t| (Rc::clone(&t.f), t.origin))
            .collect();
        for (f, origin) in due {
            callback::contain("a system event trigger", Some(origin), || {
                (f.borrow_mut())()
            });
        }
    }

    /// How many shutdown hooks' Deferreds are still pending.
    pub(super) fn holds(&self) -> usize {
        self.holds.get()
    }

    pub(super) fn clear(&self) {
        let list = std::mem::take(&mut *self.list.borrow_mut());
        drop(list);
    }
}

impl Reactor {
    /// Adds a callback that runs at every `run()`'s startup or shutdown, in `phase`.
    #[track_caller]
    pub fn add_system_event_trigger<F: FnMut() + 'static>(
        &self,
        phase: Phase,
        event: SystemEvent,
        f: F,
    ) -> TriggerId {
        let triggers = &self.inner.triggers;
        let id = TriggerId(triggers.next.get());
        triggers.next.set(id.0 + 1);
        triggers.list.borrow_mut().push(Trigger {
            id,
            event,
            phase,
            f: Rc::new(RefCell::new(f)),
            origin: Location::caller(),
        });
        id
    }

    /// Adds a `Before`-shutdown trigger that returns a Deferred, and the shutdown waits for
    /// it: listeners and connections stay open until every such Deferred has fired (or
    /// until `stop()` is called once more). Twisted's before-shutdown triggers returning a
    /// Deferred; how a service tree is stopped in order ([`Reactor::run_service`]). An
    /// error the Deferred fails with is logged. Remove it with
    /// [`remove_system_event_trigger`](Reactor::remove_system_event_trigger).
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion_reactor::{Reactor, defer_later};
    ///
    /// let reactor = Reactor::current();
    /// reactor.add_shutdown_hook(|| {
    ///     let reactor = Reactor::current();
    ///     // Say goodbye, then let the shutdown go on 10 ms later.
    ///     defer_later(&reactor, Duration::from_millis(10), || ())
    /// });
    /// reactor.call_soon(|| Reactor::current().stop().unwrap());
    /// reactor.run().unwrap();
    /// ```
    #[track_caller]
    pub fn add_shutdown_hook<F>(&self, mut f: F) -> TriggerId
    where
        F: FnMut() -> Deferred<()> + 'static,
    {
        let holds = Rc::clone(&self.inner.triggers.holds);
        self.add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || {
            let hold = f();
            holds.set(holds.get() + 1);
            let holds = Rc::clone(&holds);
            hold.on_result(move |result| {
                holds.set(holds.get().saturating_sub(1));
                if let Err(err) = result {
                    log::error!("a shutdown hook failed: {err}");
                }
                if holds.get() == 0 {
                    // Wake the shutdown's wait, which may otherwise block in the poller
                    // (this runs in the Deferred phase, before the wait for I/O).
                    Reactor::current().call_soon(|| {});
                }
            });
        })
    }

    /// Removes a trigger; returns whether it was there.
    pub fn remove_system_event_trigger(&self, id: TriggerId) -> bool {
        let mut list = self.inner.triggers.list.borrow_mut();
        let before = list.len();
        list.retain(|t| t.id != id);
        list.len() != before
    }
}
