//! [`MultiService`]: a service made of services, started in order and stopped in reverse.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use super::{Service, already_running};
use crate::defer::deferred::Deferred;
use crate::defer::shared::SharedDeferred;
use crate::error::{Error, ErrorKind};
use crate::event_loop::callback;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Stopped,
    Starting,
    Running,
    Stopping,
}

/// A [`Service`] made of child services (Twisted's `MultiService`, with the ordering of its
/// old `DependentMultiService`): `start` starts the children one after the other in the
/// order they were added, each once the previous one has started; `stop` stops the running
/// ones in the reverse order, each once the next one has finished stopping. So a service
/// added after the ones it uses (a server after its database client) starts after them and
/// stops before them.
///
/// - A child that fails to start stops the start: the children already started are
///   stopped again (in reverse), and the start fails with that child's error.
/// - A child whose stop fails (or panics) is reported (`log::error!`) and the others are
///   still stopped; the stop then fails with an error naming each child that failed.
/// - Children added while it runs are started at once ([`add_service`]'s Deferred says
///   when); children removed while it runs are stopped ([`remove_service`]).
/// - Stopping while it starts waits for the child being started, starts no more, then
///   stops those that started.
///
/// (Twisted's `MultiService.stopService` stops every child at once, in reverse order, and
/// waits for all; this one waits for each in turn, which is what an ordered shutdown
/// needs.)
///
/// [`add_service`]: MultiService::add_service
/// [`remove_service`]: MultiService::remove_service
pub struct MultiService {
    me: Weak<MultiService>,
    name: String,
    children: RefCell<Vec<Rc<dyn Service>>>,
    state: Cell<State>,
    /// The start under way (a stop waits for it).
    starting: RefCell<Option<SharedDeferred<()>>>,
    /// The stop under way (a second `stop` waits for the same).
    stopping: RefCell<Option<SharedDeferred<()>>>,
}

impl std::fmt::Debug for MultiService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .children
            .borrow()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        f.debug_struct("MultiService")
            .field("name", &self.name)
            .field("state", &self.state.get())
            .field("children", &names)
            .finish()
    }
}

impl MultiService {
    /// An empty service tree node named `name`.
    pub fn new(name: impl Into<String>) -> Rc<MultiService> {
        Rc::new_cyclic(|me| MultiService {
            me: me.clone(),
            name: name.into(),
            children: RefCell::new(Vec::new()),
            state: Cell::new(State::Stopped),
            starting: RefCell::new(None),
            stopping: RefCell::new(None),
        })
    }

    /// Adds `service` as the last child. If this service is running, the child is started
    /// now and the Deferred says when it has (else it fires at once).
    ///
    /// Error: [`ErrorKind::InvalidInput`] if a child of that name is already here.
    pub fn add_service(&self, service: Rc<dyn Service>) -> Result<Deferred<()>, Error> {
        if self.get_service(service.name()).is_some() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "cannot add service \"{}\" to \"{}\": it already has a service of that name",
                    service.name(),
                    self.name
                ),
            ));
        }
        self.children.borrow_mut().push(Rc::clone(&service));
        // While starting, the start picks the new child up in its turn.
        if self.state.get() == State::Running && !service.is_running() {
            return Ok(guarded_start(&service));
        }
        Ok(Deferred::succeed(()))
    }

    /// Removes the child named `name`. If this service is running and the child too, the
    /// child is stopped and the Deferred says when it has (else it fires at once).
    ///
    /// Error: [`ErrorKind::InvalidInput`] if there is no child of that name.
    pub fn remove_service(&self, name: &str) -> Result<Deferred<()>, Error> {
        let removed = {
            let mut children = self.children.borrow_mut();
            let at = children.iter().position(|c| c.name() == name);
            at.map(|i| children.remove(i))
        };
        let Some(child) = removed else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "cannot remove service \"{name}\" from \"{}\": no such service",
                    self.name
                ),
            ));
        };
        if self.state.get() != State::Stopped && child.is_running() {
            return Ok(guarded_stop(&child));
        }
        Ok(Deferred::succeed(()))
    }

    /// The child named `name`.
    pub fn get_service(&self, name: &str) -> Option<Rc<dyn Service>> {
        self.children
            .borrow()
            .iter()
            .find(|c| c.name() == name)
            .cloned()
    }

    /// The children, in start order.
    pub fn services(&self) -> Vec<Rc<dyn Service>> {
        self.children.borrow().clone()
    }

    fn child_at(&self, i: usize) -> Option<Rc<dyn Service>> {
        self.children.borrow().get(i).cloned()
    }

    /// Starts the children in turn; on a failure, stops those started and fails.
    async fn start_children(me: Rc<MultiService>) -> Result<(), Error> {
        let mut started: Vec<Rc<dyn Service>> = Vec::new();
        let mut next = 0;
        let mut outcome = Ok(());
        while let Some(child) = me.child_at(next) {
            next += 1;
            if me.state.get() != State::Starting {
                outcome = Err(Error::new(
                    ErrorKind::Cancelled,
                    format!("service \"{}\" was stopped while it started", me.name),
                ));
                break;
            }
            if child.is_running() {
                continue; // started on its own: not ours to stop on a failure
            }
            match guarded_start(&child).await {
                Ok(()) => started.push(child),
                Err(err) => {
                    log::debug!("service \"{}\" did not start: {err}", child.name());
                    outcome = Err(err);
                    break;
                }
            }
        }
        if outcome.is_err() && me.state.get() == State::Starting {
            // Undo: the children started so far, newest first.
            for child in started.iter().rev() {
                if let Err(err) = guarded_stop(child).await {
                    log::error!(
                        "service \"{}\" failed to stop after \"{}\" failed to start: {err}",
                        child.name(),
                        me.name
                    );
                }
            }
            me.state.set(State::Stopped);
        } else if me.state.get() == State::Starting {
            me.state.set(State::Running);
        }
        outcome
    }

    /// Waits for a start under way, then stops the running children, newest first.
    async fn stop_children(me: Rc<MultiService>) -> Result<(), Error> {
        let starting = me.starting.borrow_mut().take();
        if let Some(starting) = starting {
            let _ = starting.get().await;
        }
        let children: Vec<Rc<dyn Service>> = me.children.borrow().iter().rev().cloned().collect();
        let mut failed = Vec::new();
        for child in children {
            if !child.is_running() {
                continue;
            }
            if let Err(err) = guarded_stop(&child).await {
                log::error!("service \"{}\" failed to stop: {err}", child.name());
                failed.push(format!("\"{}\" ({err})", child.name()));
            }
        }
        me.state.set(State::Stopped);
        me.stopping.borrow_mut().take();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Other,
                format!(
                    "service \"{}\" stopped, but {} of its services failed to stop: {}",
                    me.name,
                    failed.len(),
                    failed.join(", ")
                ),
            ))
        }
    }
}

/// A child's start, with a panic in it turned into a failed start (and reported).
fn guarded_start(child: &Rc<dyn Service>) -> Deferred<()> {
    guarded(child, "start", |c| c.start())
}

/// A child's stop, with a panic in it turned into a failed stop (and reported).
fn guarded_stop(child: &Rc<dyn Service>) -> Deferred<()> {
    guarded(child, "stop", |c| c.stop())
}

fn guarded(
    child: &Rc<dyn Service>,
    what: &str,
    f: impl FnOnce(&dyn Service) -> Deferred<()>,
) -> Deferred<()> {
    match callback::guard(|| f(&**child)) {
        Ok(d) => d,
        Err(msg) => {
            let context = format!("the {what} of service \"{}\"", child.name());
            callback::report_panic(&context, None, msg.clone());
            Deferred::fail(Error::new(
                ErrorKind::Panicked,
                format!("{context} panicked: {msg}"),
            ))
        }
    }
}

impl Service for MultiService {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&self) -> Deferred<()> {
        match self.state.get() {
            State::Starting | State::Running => return Deferred::fail(already_running(&self.name)),
            State::Stopping => {
                return Deferred::fail(Error::new(
                    ErrorKind::Busy,
                    format!(
                        "cannot start service \"{}\": it is still stopping",
                        self.name
                    ),
                ));
            }
            State::Stopped => {}
        }
        let Some(me) = self.me.upgrade() else {
            return Deferred::fail(Error::new(ErrorKind::Other, "the service is being dropped"));
        };
        self.state.set(State::Starting);
        let started = Deferred::from_future(MultiService::start_children(me)).shared();
        *self.starting.borrow_mut() = Some(started.clone());
        started.get()
    }

    fn stop(&self) -> Deferred<()> {
        match self.state.get() {
            State::Stopped => return Deferred::succeed(()),
            State::Stopping => {
                if let Some(stopping) = &*self.stopping.borrow() {
                    return stopping.get();
                }
            }
            State::Starting | State::Running => {}
        }
        let Some(me) = self.me.upgrade() else {
            return Deferred::succeed(());
        };
        self.state.set(State::Stopping);
        let stopped = Deferred::from_future(MultiService::stop_children(me)).shared();
        *self.stopping.borrow_mut() = Some(stopped.clone());
        stopped.get()
    }

    fn is_running(&self) -> bool {
        matches!(self.state.get(), State::Starting | State::Running)
    }
}
