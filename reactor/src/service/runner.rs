//! Running a service tree with the reactor: start it once the loop runs, stop it (and wait
//! for its stop) at the reactor's graceful shutdown.

use std::cell::RefCell;
use std::rc::Rc;

use super::Service;
use crate::defer::deferred::Deferred;
use crate::error::Error;
use crate::event_loop::Reactor;

/// Runs a reactor with a [`Service`] tree (what Twisted's `twist` and `twistd` do with an
/// application): once the reactor runs, the root is started; at the reactor's graceful
/// shutdown (`stop()`, SIGINT, SIGTERM) a [shutdown hook](Reactor::add_shutdown_hook) stops
/// the root, and the reactor waits for that stop (servers drained, clients disconnected)
/// before it closes what is left and `run` returns. A second SIGTERM (or `stop()`) cuts the
/// wait short.
///
/// If the root fails to start (a port in use), the reactor is stopped and
/// [`run`](ServiceRunner::run) returns that error; if the root's stop fails, `run`
/// returns that error (after the reactor has stopped).
///
/// ```
/// use std::time::Duration;
/// use torsion_reactor::{Deferred, Reactor, Service, ServiceRunner, service_fn};
///
/// let reactor = Reactor::current();
/// let app = service_fn("app", || Deferred::succeed(()), || Deferred::succeed(()));
/// let runner = ServiceRunner::new(&reactor, app.clone()).on_started(|| {
///     println!("started");
///     // A real program runs until SIGTERM; this one stops itself.
///     Reactor::current().stop().unwrap();
/// });
/// runner.run().unwrap();
/// assert!(!app.is_running());
/// ```
pub struct ServiceRunner {
    reactor: Reactor,
    root: Rc<dyn Service>,
    on_started: Option<Box<dyn FnOnce()>>,
}

impl std::fmt::Debug for ServiceRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRunner")
            .field("root", &self.root.name())
            .finish()
    }
}

impl ServiceRunner {
    /// A runner of `root` on `reactor`.
    pub fn new(reactor: &Reactor, root: Rc<dyn Service>) -> ServiceRunner {
        ServiceRunner {
            reactor: reactor.clone(),
            root,
            on_started: None,
        }
    }

    /// Calls `f` (from the loop) once the root has started: print `listening on ...`
    /// lines here, so that a supervisor that reads them can already stop the program
    /// gracefully.
    pub fn on_started(mut self, f: impl FnOnce() + 'static) -> ServiceRunner {
        self.on_started = Some(Box::new(f));
        self
    }

    /// Starts the root once the reactor runs, runs the reactor until it is stopped, and
    /// stops the root at its shutdown (see [`ServiceRunner`]).
    ///
    /// Errors: the root's start error; the root's stop error; those of
    /// [`Reactor::run`].
    pub fn run(self) -> Result<(), Error> {
        let ServiceRunner {
            reactor,
            root,
            on_started,
        } = self;
        let failure: Rc<RefCell<Option<Error>>> = Rc::new(RefCell::new(None));

        let (stop_root, f) = (Rc::clone(&root), Rc::clone(&failure));
        let hook = reactor.add_shutdown_hook(move || {
            if !stop_root.is_running() {
                return Deferred::succeed(());
            }
            log::info!("stopping service \"{}\"", stop_root.name());
            let f = Rc::clone(&f);
            stop_root.stop().then(move |result| {
                if let Err(err) = result {
                    f.borrow_mut().get_or_insert(err);
                }
                Ok::<(), Error>(())
            })
        });

        let f = Rc::clone(&failure);
        reactor.call_when_running(move || {
            root.start().on_result(move |result| match result {
                Ok(()) => {
                    if let Some(on_started) = on_started {
                        on_started();
                    }
                }
                Err(err) => {
                    f.borrow_mut().get_or_insert(err);
                    let _ = Reactor::current().stop();
                }
            })
        });

        let ran = reactor.run();
        reactor.remove_system_event_trigger(hook);
        match failure.borrow_mut().take() {
            Some(err) => Err(err),
            None => ran,
        }
    }
}

impl Reactor {
    /// Runs this reactor with the service tree `root`: starts it once the loop runs, and
    /// at the graceful shutdown stops it and waits for its stop. Shorthand for
    /// [`ServiceRunner::new(self, root).run()`](ServiceRunner::run).
    pub fn run_service(&self, root: Rc<dyn Service>) -> Result<(), Error> {
        ServiceRunner::new(self, root).run()
    }
}
