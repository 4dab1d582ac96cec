//! Happy Eyeballs (RFC 8305): connecting to a host that has several addresses.
//!
//! A host name often resolves to IPv6 and IPv4 addresses, and some of them may not work (no
//! IPv6 route, a firewall that drops packets). Trying them one after another, each with the
//! full timeout, makes a client hang for minutes; trying them all at once wastes
//! connections. [`race`] does what RFC 8305 recommends:
//!
//! - the addresses are put in order with the families interleaved, IPv6 first when there is
//!   one ([`interleave`]);
//! - the first attempt starts at once, and each next one starts [`ATTEMPT_DELAY`] (250 ms)
//!   after the previous one, or at once when an attempt fails, so a refused IPv6 address
//!   costs no delay;
//! - the first attempt that succeeds wins, and the others are cancelled;
//! - the whole thing, name resolution included, fails with [`ErrorKind::TimedOut`] after the
//!   timeout, naming the host and port;
//! - when every address failed, the error names the host and port, the addresses tried and
//!   the cause.
//!
//! [`race`] is generic over what an attempt is: a function that starts one and returns a
//! [`Deferred`]. The `tcp:` client endpoints use it with TCP connections ([`connect_tcp`],
//! each attempt a reactor connector whose outcome is a Deferred); tests
//! use it with a [`Clock`](torsion_reactor::Clock) and attempts they fire by hand:
//!
//! ```
//! use std::{cell::RefCell, net::SocketAddr, rc::Rc, time::Duration};
//! use torsion_endpoints::happy_eyeballs::{race, RaceOptions};
//! use torsion_reactor::{SharedFactory, Clock, Deferred, Reactor, Resolver, Scheduler};
//!
//! let clock = Clock::new();
//! let started: Rc<RefCell<Vec<(Duration, SocketAddr, Resolver<&str>)>>> = Default::default();
//! let s = started.clone();
//! let c = clock.clone();
//! let addresses: Vec<SocketAddr> = vec!["127.0.0.1:80".parse().unwrap(), "[::1]:80".parse().unwrap()];
//! let outcome = race(
//!     Rc::new(clock.clone()) as Rc<dyn Scheduler>,
//!     RaceOptions::new("example.org:80"),
//!     Deferred::succeed(addresses),
//!     move |addr, _claim| {
//!         let (attempt, resolver) = Deferred::new();
//!         s.borrow_mut().push((c.elapsed(), addr, resolver));
//!         attempt
//!     },
//!     |_loser| {},
//! );
//! let reactor = Reactor::current();
//! reactor.run_until(Duration::from_secs(5), || started.borrow().len() == 1);
//! assert_eq!(started.borrow()[0].1.to_string(), "[::1]:80"); // IPv6 first
//! clock.advance(Duration::from_millis(250)); // no answer yet: IPv4 starts too
//! assert_eq!(started.borrow()[1].1.to_string(), "127.0.0.1:80");
//! started.borrow()[1].2.callback("connected over IPv4").unwrap();
//! let got = reactor.run_until_complete(outcome).unwrap().unwrap();
//! assert_eq!(got, "connected over IPv4");
//! assert!(started.borrow()[0].2.is_cancelled(), "the IPv6 attempt was cancelled");
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use torsion_reactor::{
    ClientFactory, Deferred, DelayedCall, Error, ErrorKind, Factory, Reactor, Resolver, Scheduler,
    SchedulerExt, SharedFactory, TcpConnectOptions, Transport,
};

use crate::attempt::{attempt, connect_once, copy_io};
use crate::spec::DEFAULT_TIMEOUT;
use crate::values::format_seconds;

/// How long an attempt has before the next one starts (RFC 8305's "Connection Attempt
/// Delay"; the RFC recommends 250 ms).
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// How a [`race`] runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaceOptions {
    /// What is being connected to, for messages: `example.org:80`, `[::1]:80`.
    pub target: String,
    /// How long an attempt has before the next one starts (default [`ATTEMPT_DELAY`]).
    pub attempt_delay: Duration,
    /// How long the whole race may take, resolution included (default 30 s); `None` waits
    /// for the attempts' own outcomes.
    pub timeout: Option<Duration>,
}

impl RaceOptions {
    /// Options for connecting to `target` with the defaults: 250 ms between attempts,
    /// 30 s in all.
    pub fn new(target: impl Into<String>) -> RaceOptions {
        RaceOptions {
            target: target.into(),
            attempt_delay: ATTEMPT_DELAY,
            timeout: Some(DEFAULT_TIMEOUT),
        }
    }
}

/// `host:port` as people write it: `example.org:80`, `192.0.2.1:80`, `[::1]:80`.
pub fn target_name(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The order to try `addresses` in: duplicates dropped, then the families alternating,
/// IPv6 first when there is an IPv6 address (RFC 8305 section 4), each family in the
/// order given (the resolver's preference).
///
/// ```
/// use std::net::SocketAddr;
/// use torsion_endpoints::happy_eyeballs::interleave;
///
/// let a = |s: &str| s.parse::<SocketAddr>().unwrap();
/// let ordered = interleave(vec![a("192.0.2.1:80"), a("192.0.2.2:80"), a("[2001:db8::1]:80"), a("192.0.2.1:80")]);
/// assert_eq!(ordered, [a("[2001:db8::1]:80"), a("192.0.2.1:80"), a("192.0.2.2:80")]);
/// ```
pub fn interleave(addresses: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut seen = std::collections::HashSet::new();
    let (v6, v4): (Vec<SocketAddr>, Vec<SocketAddr>) = addresses
        .into_iter()
        .filter(|a| seen.insert(*a))
        .partition(SocketAddr::is_ipv6);
    let mut out = Vec::with_capacity(v6.len() + v4.len());
    let (mut v6, mut v4) = (v6.into_iter(), v4.into_iter());
    loop {
        match (v6.next(), v4.next()) {
            (None, None) => break,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
    out
}

/// Handed to each attempt: lets it claim victory *before* it commits to anything (say,
/// before building the protocol of a connection that has just been made), so that of two
/// attempts that succeed at the same moment only one goes on.
///
/// An attempt that never claims is claimed for when its Deferred succeeds.
#[derive(Clone)]
pub struct Claim {
    race: Weak<dyn Claimable>,
    index: usize,
    address: SocketAddr,
}

impl Claim {
    /// Makes this attempt the winner if no other has won and the race is not over: the other
    /// attempts are cancelled and no more are started. Returns whether this attempt is the
    /// winner (also `true` when it had already claimed).
    pub fn try_win(&self) -> bool {
        self.race
            .upgrade()
            .is_some_and(|race| race.claim(self.index))
    }

    /// The address this attempt connects to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("index", &self.index)
            .field("address", &self.address)
            .finish()
    }
}

trait Claimable {
    fn claim(&self, index: usize) -> bool;
}

/// Connects to the first of `addresses` that works, Happy-Eyeballs style (see the
/// [module documentation](self)).
///
/// - `scheduler` is the reactor, or a [`Clock`](torsion_reactor::Clock) in tests.
/// - `addresses` is the result of name resolution; its error (say, an unknown host) is the
///   race's error. Resolution counts against `options.timeout`.
/// - `start(address, claim)` starts one attempt; the Deferred it returns says how it went,
///   and cancelling it must stop the attempt.
/// - `discard(value)` disposes of a success that came too late (the race was already won,
///   timed out or cancelled), such as closing a connection.
///
/// The returned Deferred fires with the winner's value, or fails: with the resolution
/// error; with an [`ErrorKind::InvalidInput`] error if there is no address; with
/// [`ErrorKind::TimedOut`] after the timeout; with the last attempt's error kind when every
/// attempt failed (the message names the target, every address tried and the causes).
/// Cancelling it cancels the resolution and every attempt.
pub fn race<T, S, D>(
    scheduler: Rc<dyn Scheduler>,
    options: RaceOptions,
    addresses: Deferred<Vec<SocketAddr>>,
    start: S,
    discard: D,
) -> Deferred<T>
where
    T: 'static,
    S: FnMut(SocketAddr, Claim) -> Deferred<T> + 'static,
    D: Fn(T) + 'static,
{
    // The canceller needs the machine, and the machine holds the resolver: the canceller
    // finds the machine through a slot filled in just after.
    let slot: Rc<RefCell<Weak<Machine<T>>>> = Rc::new(RefCell::new(Weak::new()));
    let s = Rc::clone(&slot);
    let (outcome, resolver) = Deferred::<T>::with_canceller(move |_| {
        let machine = s.borrow().upgrade();
        if let Some(m) = machine {
            m.cancelled();
        }
    });
    let machine = Rc::new_cyclic(|me: &Weak<Machine<T>>| Machine {
        me: me.clone(),
        scheduler,
        options,
        start: RefCell::new(Box::new(start)),
        discard: Box::new(discard),
        resolver,
        st: RefCell::new(State {
            phase: Phase::Resolving,
            resolving: None,
            pending: VecDeque::new(),
            attempts: Vec::new(),
            winner: None,
            next: None,
            deadline: None,
            failures: Vec::new(),
        }),
    });
    *slot.borrow_mut() = Rc::downgrade(&machine);
    machine.begin(addresses);
    outcome
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Resolving,
    Racing,
    Done,
}

struct Slot {
    address: SocketAddr,
    /// The attempt's Deferred, chained to the machine; cancelling it cancels the attempt.
    tail: Option<Deferred<()>>,
    done: bool,
}

struct State {
    phase: Phase,
    resolving: Option<Deferred<()>>,
    pending: VecDeque<SocketAddr>,
    attempts: Vec<Slot>,
    winner: Option<usize>,
    next: Option<DelayedCall>,
    deadline: Option<DelayedCall>,
    failures: Vec<(SocketAddr, Error)>,
}

type Start<T> = Box<dyn FnMut(SocketAddr, Claim) -> Deferred<T>>;

struct Machine<T> {
    me: Weak<Machine<T>>,
    scheduler: Rc<dyn Scheduler>,
    options: RaceOptions,
    start: RefCell<Start<T>>,
    discard: Box<dyn Fn(T)>,
    resolver: Resolver<T>,
    st: RefCell<State>,
}

impl<T: 'static> Machine<T> {
    fn begin(self: &Rc<Self>, addresses: Deferred<Vec<SocketAddr>>) {
        if let Some(timeout) = self.options.timeout {
            let m = Rc::clone(self);
            let call = self.scheduler.call_later(timeout, move || m.timed_out());
            self.st.borrow_mut().deadline = Some(call);
        }
        let m = Rc::clone(self);
        let tail = addresses.then(move |result| {
            m.resolved(result);
            Ok::<(), Error>(())
        });
        let mut st = self.st.borrow_mut();
        if st.phase == Phase::Resolving {
            st.resolving = Some(tail);
        }
    }

    fn resolved(self: &Rc<Self>, result: Result<Vec<SocketAddr>, Error>) {
        {
            let mut st = self.st.borrow_mut();
            if st.phase != Phase::Resolving {
                return;
            }
            st.resolving = None;
        }
        let addresses = match result {
            Ok(addresses) => interleave(addresses),
            Err(err) => return self.finish(Err(err)),
        };
        if addresses.is_empty() {
            let err = Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "cannot connect to {}: there is no address to connect to",
                    self.options.target
                ),
            );
            return self.finish(Err(err));
        }
        {
            let mut st = self.st.borrow_mut();
            st.phase = Phase::Racing;
            st.pending = addresses.into();
        }
        self.start_next();
    }

    /// Starts the next address's attempt, and the timer for the one after.
    fn start_next(self: &Rc<Self>) {
        let (index, address) = {
            let mut st = self.st.borrow_mut();
            if st.phase != Phase::Racing || st.winner.is_some() {
                return;
            }
            let Some(address) = st.pending.pop_front() else {
                return;
            };
            if let Some(call) = st.next.take() {
                let _ = call.cancel();
            }
            st.attempts.push(Slot {
                address,
                tail: None,
                done: false,
            });
            (st.attempts.len() - 1, address)
        };
        let race: Weak<dyn Claimable> = self.me.clone() as Weak<dyn Claimable>;
        let claim = Claim {
            race,
            index,
            address,
        };
        let attempt = {
            let mut start = self.start.borrow_mut();
            (*start)(address, claim)
        };
        let m = Rc::clone(self);
        let tail = attempt.then(move |result| {
            m.attempt_done(index, result);
            Ok::<(), Error>(())
        });
        let mut st = self.st.borrow_mut();
        let lost = st.phase != Phase::Racing || st.winner.is_some_and(|w| w != index);
        if lost {
            drop(st);
            tail.cancel();
            return;
        }
        st.attempts[index].tail = Some(tail);
        if st.winner.is_none() && !st.pending.is_empty() {
            let m = Rc::clone(self);
            let call = self
                .scheduler
                .call_later(self.options.attempt_delay, move || m.start_next());
            st.next = Some(call);
        }
    }

    fn attempt_done(self: &Rc<Self>, index: usize, result: Result<T, Error>) {
        let err = match result {
            Ok(value) => {
                if self.claim(index) {
                    self.finish(Ok(value));
                } else {
                    (self.discard)(value);
                }
                return;
            }
            Err(err) => err,
        };
        let mut st = self.st.borrow_mut();
        if st.phase != Phase::Racing {
            return;
        }
        let address = st.attempts[index].address;
        st.attempts[index].done = true;
        st.attempts[index].tail = None;
        match st.winner {
            Some(w) if w == index => {
                drop(st);
                let err = self.combined(&[(address, err)]);
                self.finish(Err(err));
            }
            Some(_) => {}
            None => {
                st.failures.push((address, err));
                if !st.pending.is_empty() {
                    drop(st);
                    self.start_next();
                } else if st.attempts.iter().all(|a| a.done) {
                    let failures = std::mem::take(&mut st.failures);
                    drop(st);
                    let err = self.combined(&failures);
                    self.finish(Err(err));
                }
            }
        }
    }

    fn timed_out(self: &Rc<Self>) {
        let message = {
            let st = self.st.borrow();
            let after = self
                .options
                .timeout
                .map(|t| format!(" after {}s", format_seconds(t)))
                .unwrap_or_default();
            match st.phase {
                Phase::Done => return,
                Phase::Resolving => format!(
                    "cannot connect to {}: timed out{after} resolving the host name",
                    self.options.target
                ),
                Phase::Racing => {
                    let tried: Vec<String> =
                        st.attempts.iter().map(|a| a.address.to_string()).collect();
                    if tried.len() == 1 && tried[0] == self.options.target {
                        format!(
                            "cannot connect to {}: timed out{after}",
                            self.options.target
                        )
                    } else {
                        format!(
                            "cannot connect to {} (tried {}): timed out{after}",
                            self.options.target,
                            tried.join(", ")
                        )
                    }
                }
            }
        };
        self.finish(Err(Error::new(ErrorKind::TimedOut, message)));
    }

    fn cancelled(self: &Rc<Self>) {
        if self.st.borrow().phase == Phase::Done {
            return;
        }
        let err = Error::new(
            ErrorKind::Cancelled,
            format!("connecting to {} was cancelled", self.options.target),
        );
        self.finish(Err(err));
    }

    /// Ends the race: stops timers, resolution and every attempt still running, and fires
    /// the outcome (or disposes of a value nobody waits for any more).
    fn finish(&self, result: Result<T, Error>) {
        let (tails, timers, resolving) = {
            let mut st = self.st.borrow_mut();
            if st.phase == Phase::Done {
                drop(st);
                if let Ok(value) = result {
                    (self.discard)(value);
                }
                return;
            }
            st.phase = Phase::Done;
            st.pending.clear();
            let tails: Vec<Deferred<()>> = st
                .attempts
                .iter_mut()
                .filter_map(|a| a.tail.take())
                .collect();
            let timers: Vec<DelayedCall> = st
                .next
                .take()
                .into_iter()
                .chain(st.deadline.take())
                .collect();
            (tails, timers, st.resolving.take())
        };
        for call in timers {
            let _ = call.cancel();
        }
        if let Some(r) = resolving {
            r.cancel();
        }
        for tail in tails {
            tail.cancel();
        }
        if self.resolver.is_fired() {
            if let Ok(value) = result {
                (self.discard)(value);
            }
            return;
        }
        let _ = self.resolver.resolve(result);
    }

    /// The error when every attempt failed (or the winner failed after claiming): the
    /// target, the addresses tried with their causes, and the last cause.
    fn combined(&self, failures: &[(SocketAddr, Error)]) -> Error {
        combine(&self.options.target, failures)
    }
}

impl<T: 'static> Claimable for Machine<T> {
    fn claim(&self, index: usize) -> bool {
        let (tails, timers) = {
            let mut st = self.st.borrow_mut();
            if let Some(w) = st.winner {
                return w == index;
            }
            if st.phase != Phase::Racing || st.attempts.get(index).is_none_or(|a| a.done) {
                return false;
            }
            st.winner = Some(index);
            st.pending.clear();
            let tails: Vec<Deferred<()>> = st
                .attempts
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .filter_map(|(_, a)| a.tail.take())
                .collect();
            // The connection is made: the deadline no longer applies.
            let timers: Vec<DelayedCall> = st
                .next
                .take()
                .into_iter()
                .chain(st.deadline.take())
                .collect();
            (tails, timers)
        };
        for call in timers {
            let _ = call.cancel();
        }
        for tail in tails {
            tail.cancel();
        }
        true
    }
}

/// What went wrong, without the context: for an OS error its description, else the message
/// with a leading `cannot connect to ADDRESS: ` removed.
fn cause(address: &SocketAddr, err: &Error) -> String {
    let full = err.to_string();
    let prefix = format!("{}: ", err.message());
    if err.io_error().is_some() {
        if let Some(rest) = full.strip_prefix(&prefix) {
            return rest.to_owned();
        }
    }
    let context = format!("cannot connect to {address}: ");
    match err.message().strip_prefix(&context) {
        Some(rest) => rest.to_owned(),
        None => err.message().to_owned(),
    }
}

fn same_kind(err: &Error) -> ErrorKind {
    match err.kind() {
        ErrorKind::TimedOut => ErrorKind::TimedOut,
        ErrorKind::Cancelled => ErrorKind::Cancelled,
        ErrorKind::InvalidInput => ErrorKind::InvalidInput,
        ErrorKind::Io => ErrorKind::Io,
        _ => ErrorKind::Other,
    }
}

/// `cannot connect to TARGET (tried A: cause; B): last cause`, keeping the last error's kind
/// and OS error. The addresses are left out when there is one and it is the target itself.
fn combine(target: &str, failures: &[(SocketAddr, Error)]) -> Error {
    let Some((last_address, last)) = failures.last() else {
        return Error::new(ErrorKind::Other, format!("cannot connect to {target}"));
    };
    let last_cause = cause(last_address, last);
    let mut context = format!("cannot connect to {target}");
    let alone = failures.len() == 1 && last_address.to_string() == target;
    if !alone {
        let tried: Vec<String> = failures
            .iter()
            .map(|(address, err)| {
                let c = cause(address, err);
                if c == last_cause {
                    address.to_string()
                } else {
                    format!("{address}: {c}")
                }
            })
            .collect();
        let separator = if tried.iter().any(|t| t.contains(' ')) {
            "; "
        } else {
            ", "
        };
        context.push_str(&format!(" (tried {})", tried.join(separator)));
    }
    match last.io_error() {
        Some(e) => Error::io(context, copy_io(e)),
        None => Error::new(same_kind(last), format!("{context}: {last_cause}")),
    }
}

/// Connects over TCP to the first of `addresses` that works (see [`race`]), building the
/// protocol with `factory` for the winning connection only; the Deferred fires with its
/// transport once the protocol's `connection_made` has run.
///
/// This is what `tcp:` client endpoints do after resolving the host name; call it directly
/// to connect to addresses found some other way (your own resolver, SRV records). Each
/// attempt binds to `bind_addr` first if given (addresses of the other family are skipped)
/// and is given `options.timeout` too. Cancelling the Deferred stops every attempt.
///
/// `factory`'s `start_factory` runs once when this is called, and `stop_factory` once when
/// the connect fails or the connection it made is lost (however many attempts the race
/// makes); the client-factory callbacks of a [`ClientFactory`] are not called: the Deferred
/// says how the attempt went.
///
/// ```no_run
/// use std::net::SocketAddr;
/// use torsion_endpoints::happy_eyeballs::{connect_tcp, RaceOptions};
/// use torsion_reactor::{factory_fn, Deferred, Protocol, Reactor, Transport};
///
/// struct Hello;
/// impl Protocol for Hello {
///     fn connection_made(&mut self, t: &Transport) { t.write(b"hello\n"); }
///     fn data_received(&mut self, _: &Transport, _: &[u8]) {}
/// }
///
/// let reactor = Reactor::current();
/// let addresses: Vec<SocketAddr> = vec!["[2001:db8::1]:7000".parse().unwrap(), "192.0.2.1:7000".parse().unwrap()];
/// let connected = connect_tcp(
///     &reactor,
///     RaceOptions::new("chat.example:7000"),
///     Deferred::succeed(addresses),
///     None,
///     factory_fn(|_| Hello),
/// );
/// let transport = reactor.run_until_complete(connected).unwrap().unwrap();
/// println!("connected to {}", transport.peer_addr());
/// ```
pub fn connect_tcp<F: Factory>(
    reactor: &Reactor,
    options: RaceOptions,
    addresses: Deferred<Vec<SocketAddr>>,
    bind_addr: Option<SocketAddr>,
    factory: F,
) -> Deferred<Transport> {
    connect_once(factory, |factory| {
        race_tcp(reactor, options, addresses, bind_addr, factory)
    })
}

/// [`connect_tcp`] for a factory that is already started, and that is told when the
/// winning connection is made and lost (see [`ClientSpec::connect`](crate::ClientSpec::connect)).
pub(crate) fn race_tcp<C: ClientFactory>(
    reactor: &Reactor,
    options: RaceOptions,
    addresses: Deferred<Vec<SocketAddr>>,
    bind_addr: Option<SocketAddr>,
    factory: SharedFactory<C>,
) -> Deferred<Transport> {
    let r = reactor.clone();
    let timeout = options.timeout;
    let addresses = match bind_addr {
        Some(bind) => addresses.map(move |all| {
            all.into_iter()
                .filter(|a| a.is_ipv4() == bind.is_ipv4())
                .collect()
        }),
        None => addresses,
    };
    let start = move |address: SocketAddr, claim: Claim| {
        let options = TcpConnectOptions { timeout, bind_addr };
        let r = r.clone();
        attempt(
            address.to_string(),
            factory.clone(),
            Some(Box::new(move || claim.try_win())),
            timeout,
            move |f| r.connect_tcp_with(address, f, &options),
        )
    };
    let scheduler: Rc<dyn Scheduler> = reactor.scheduler();
    race(scheduler, options, addresses, start, |late: Transport| {
        late.lose_connection()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use torsion_reactor::Clock;

    const MS: Duration = Duration::from_millis(1);

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("a socket address")
    }

    fn refused(address: &str) -> Error {
        Error::io(
            format!("cannot connect to {address}"),
            io::Error::from_raw_os_error(libc::ECONNREFUSED),
        )
    }

    struct Started {
        at: Duration,
        address: SocketAddr,
        resolver: Resolver<u32>,
        claim: Claim,
    }

    /// A race over fake attempts on a [`Clock`]: the test fires each attempt by hand.
    struct Harness {
        clock: Clock,
        started: Rc<RefCell<Vec<Started>>>,
        discarded: Rc<RefCell<Vec<u32>>>,
        outcome: Rc<RefCell<Option<Result<u32, Error>>>>,
        handle: Deferred<()>,
    }

    impl Harness {
        fn new(addresses: Deferred<Vec<SocketAddr>>, options: RaceOptions) -> Harness {
            Reactor::current().set_handle_signals(false);
            let clock = Clock::new();
            let started: Rc<RefCell<Vec<Started>>> = Rc::default();
            let discarded: Rc<RefCell<Vec<u32>>> = Rc::default();
            let (s, c, d) = (started.clone(), clock.clone(), discarded.clone());
            let raced = race(
                Rc::new(clock.clone()),
                options,
                addresses,
                move |address, claim| {
                    let (attempt, resolver) = Deferred::new();
                    s.borrow_mut().push(Started {
                        at: c.elapsed(),
                        address,
                        resolver,
                        claim,
                    });
                    attempt
                },
                move |late| d.borrow_mut().push(late),
            );
            // The chained Deferred is the handle for cancelling: it cancels the race.
            let outcome: Rc<RefCell<Option<Result<u32, Error>>>> = Rc::default();
            let o = outcome.clone();
            let handle = raced.then(move |result| {
                *o.borrow_mut() = Some(result);
                Ok::<(), Error>(())
            });
            let h = Harness {
                clock,
                started,
                discarded,
                outcome,
                handle,
            };
            h.settle();
            h
        }

        fn with(addresses: &[&str]) -> Harness {
            let addresses = addresses.iter().map(|s| a(s)).collect();
            Harness::new(
                Deferred::succeed(addresses),
                RaceOptions::new("example.org:80"),
            )
        }

        /// Runs the Deferred callbacks that are queued (no time passes on the clock).
        fn settle(&self) {
            let reactor = Reactor::current();
            for _ in 0..8 {
                reactor.iterate(Duration::ZERO).expect("iterates");
            }
        }

        fn advance(&self, by: Duration) {
            self.clock.advance(by);
            self.settle();
        }

        fn starts(&self) -> Vec<(u64, String)> {
            self.started
                .borrow()
                .iter()
                .map(|s| (s.at.as_millis() as u64, s.address.to_string()))
                .collect()
        }

        fn succeed(&self, i: usize, value: u32) {
            self.started.borrow()[i]
                .resolver
                .callback(value)
                .expect("fires");
            self.settle();
        }

        fn fail(&self, i: usize, err: Error) {
            self.started.borrow()[i]
                .resolver
                .errback(err)
                .expect("fires");
            self.settle();
        }

        fn cancelled(&self, i: usize) -> bool {
            self.started.borrow()[i].resolver.is_cancelled()
        }

        fn outcome(&self) -> Option<Result<u32, String>> {
            self.outcome
                .borrow()
                .as_ref()
                .map(|r| r.as_ref().map(|v| *v).map_err(|e| e.to_string()))
        }

        fn error_kind_is(&self, want: fn(&ErrorKind) -> bool) -> bool {
            matches!(&*self.outcome.borrow(), Some(Err(e)) if want(&e.kind()))
        }
    }

    #[test]
    fn families_alternate_ipv6_first_and_attempts_start_250ms_apart() {
        let h = Harness::with(&[
            "192.0.2.1:80",
            "192.0.2.2:80",
            "[2001:db8::1]:80",
            "[2001:db8::2]:80",
        ]);
        assert_eq!(h.starts(), [(0, "[2001:db8::1]:80".to_owned())]);
        h.advance(249 * MS);
        assert_eq!(h.starts().len(), 1, "nothing new before 250 ms");
        h.advance(MS);
        h.advance(250 * MS);
        h.advance(250 * MS);
        assert_eq!(
            h.starts(),
            [
                (0, "[2001:db8::1]:80".to_owned()),
                (250, "192.0.2.1:80".to_owned()),
                (500, "[2001:db8::2]:80".to_owned()),
                (750, "192.0.2.2:80".to_owned()),
            ]
        );
        assert_eq!(h.outcome(), None);
    }

    #[test]
    fn the_first_success_wins_and_the_others_are_cancelled() {
        let h = Harness::with(&["192.0.2.1:80", "[2001:db8::1]:80", "192.0.2.2:80"]);
        h.advance(250 * MS);
        assert_eq!(h.starts().len(), 2);
        h.advance(50 * MS);
        h.succeed(1, 4);
        assert_eq!(h.outcome(), Some(Ok(4)));
        assert!(h.cancelled(0), "the IPv6 attempt was cancelled");
        assert!(!h.cancelled(1));
        h.advance(Duration::from_secs(60));
        assert_eq!(h.starts().len(), 2, "no attempt starts after a win");
        assert_eq!(h.clock.pending(), 0, "no timer is left");
    }

    #[test]
    fn a_failure_starts_the_next_attempt_at_once_and_restarts_the_delay() {
        let h = Harness::with(&["[::1]:80", "127.0.0.1:80", "127.0.0.2:80"]);
        h.advance(100 * MS);
        h.fail(0, refused("[::1]:80"));
        assert_eq!(
            h.starts(),
            [(0, "[::1]:80".to_owned()), (100, "127.0.0.1:80".to_owned())]
        );
        h.advance(249 * MS);
        assert_eq!(h.starts().len(), 2, "the delay counts from the new attempt");
        h.advance(MS);
        assert_eq!(h.starts()[2], (350, "127.0.0.2:80".to_owned()));
        h.succeed(2, 7);
        assert_eq!(h.outcome(), Some(Ok(7)));
        assert!(h.cancelled(1));
    }

    #[test]
    fn when_every_address_fails_the_error_names_the_target_the_addresses_and_the_cause() {
        let h = Harness::with(&["127.0.0.1:80", "[::1]:80"]);
        h.fail(0, refused("[::1]:80"));
        assert_eq!(h.starts().len(), 2, "the IPv4 attempt starts at once");
        assert_eq!(h.outcome(), None, "one attempt is still running");
        h.fail(1, refused("127.0.0.1:80"));
        assert_eq!(
            h.outcome(),
            Some(Err(
                "cannot connect to example.org:80 (tried [::1]:80, 127.0.0.1:80): connection refused"
                    .to_owned()
            ))
        );
        assert!(h.error_kind_is(|k| matches!(k, ErrorKind::Io)));
        assert_eq!(h.clock.pending(), 0);
    }

    #[test]
    fn different_causes_are_each_named() {
        let h = Harness::with(&["127.0.0.1:80", "[::1]:80"]);
        h.fail(
            0,
            Error::io(
                "cannot connect to [::1]:80",
                io::Error::from_raw_os_error(libc::ENETUNREACH),
            ),
        );
        h.fail(1, refused("127.0.0.1:80"));
        let Some(Err(message)) = h.outcome() else {
            panic!("failed")
        };
        assert!(
            message.starts_with("cannot connect to example.org:80 (tried [::1]:80: network ")
                && message.ends_with("; 127.0.0.1:80): connection refused"),
            "{message}"
        );
    }

    #[test]
    fn one_literal_address_is_not_repeated() {
        let h = Harness::new(
            Deferred::succeed(vec![a("127.0.0.1:80")]),
            RaceOptions::new("127.0.0.1:80"),
        );
        h.fail(0, refused("127.0.0.1:80"));
        assert_eq!(
            h.outcome(),
            Some(Err(
                "cannot connect to 127.0.0.1:80: connection refused".to_owned()
            ))
        );
    }

    #[test]
    fn the_timeout_covers_the_whole_race_and_cancels_every_attempt() {
        let options = RaceOptions {
            timeout: Some(Duration::from_millis(1500)),
            ..RaceOptions::new("example.org:80")
        };
        let h = Harness::new(
            Deferred::succeed(vec![a("[::1]:80"), a("127.0.0.1:80")]),
            options,
        );
        h.advance(1499 * MS);
        assert_eq!(h.outcome(), None);
        h.advance(MS);
        assert_eq!(
            h.outcome(),
            Some(Err(
                "cannot connect to example.org:80 (tried [::1]:80, 127.0.0.1:80): timed out after 1.5s"
                    .to_owned()
            ))
        );
        assert!(h.error_kind_is(|k| matches!(k, ErrorKind::TimedOut)));
        assert!(h.cancelled(0) && h.cancelled(1));
        assert_eq!(h.clock.pending(), 0);
        // A cancelled attempt that succeeds anyway changes nothing.
        h.started.borrow()[0]
            .resolver
            .callback(9)
            .expect("a cancelled Deferred drops it");
        h.settle();
        assert!(h.error_kind_is(|k| matches!(k, ErrorKind::TimedOut)));
    }

    #[test]
    fn the_timeout_counts_from_before_resolution() {
        let (addresses, resolving) = Deferred::<Vec<SocketAddr>>::new();
        let options = RaceOptions {
            timeout: Some(Duration::from_secs(2)),
            ..RaceOptions::new("slow.example:443")
        };
        let h = Harness::new(addresses, options);
        h.advance(Duration::from_secs(2));
        assert_eq!(
            h.outcome(),
            Some(Err(
                "cannot connect to slow.example:443: timed out after 2s resolving the host name"
                    .to_owned()
            ))
        );
        assert!(resolving.is_cancelled(), "the resolution was abandoned");
        assert!(h.starts().is_empty());
    }

    #[test]
    fn resolution_that_ends_late_leaves_less_time_for_connecting() {
        let (addresses, resolving) = Deferred::<Vec<SocketAddr>>::new();
        let options = RaceOptions {
            timeout: Some(Duration::from_secs(2)),
            ..RaceOptions::new("slow.example:443")
        };
        let h = Harness::new(addresses, options);
        h.advance(Duration::from_millis(1900));
        resolving.callback(vec![a("192.0.2.9:443")]).expect("fires");
        h.settle();
        assert_eq!(h.starts(), [(1900, "192.0.2.9:443".to_owned())]);
        h.advance(Duration::from_millis(100));
        assert!(h.error_kind_is(|k| matches!(k, ErrorKind::TimedOut)));
        assert!(h.cancelled(0));
    }

    #[test]
    fn resolution_errors_and_empty_answers_fail_the_race() {
        let err = Error::io(
            "cannot connect to nosuch.example:80: cannot resolve the host name",
            io::Error::other("no such host"),
        );
        let h = Harness::new(Deferred::fail(err), RaceOptions::new("nosuch.example:80"));
        assert_eq!(
            h.outcome(),
            Some(Err(
                "cannot connect to nosuch.example:80: cannot resolve the host name: no such host"
                    .to_owned()
            ))
        );
        assert_eq!(h.clock.pending(), 0);

        let h = Harness::new(
            Deferred::succeed(Vec::new()),
            RaceOptions::new("empty.example:80"),
        );
        assert!(h.error_kind_is(|k| matches!(k, ErrorKind::InvalidInput)));
        assert_eq!(
            h.outcome(),
            Some(Err(
                "cannot connect to empty.example:80: there is no address to connect to".to_owned()
            ))
        );
    }

    #[test]
    fn cancelling_stops_every_attempt_and_timer() {
        let h = Harness::with(&["[::1]:80", "127.0.0.1:80", "127.0.0.2:80"]);
        h.advance(300 * MS);
        assert_eq!(h.starts().len(), 2);
        h.handle.cancel();
        h.settle();
        assert!(h.cancelled(0) && h.cancelled(1));
        assert!(h.error_kind_is(|k| matches!(k, ErrorKind::Cancelled)));
        assert_eq!(
            h.outcome(),
            Some(Err("connecting to example.org:80 was cancelled".to_owned()))
        );
        assert_eq!(h.clock.pending(), 0);
        h.advance(Duration::from_secs(60));
        assert_eq!(h.starts().len(), 2);
    }

    #[test]
    fn cancelling_during_resolution_cancels_it() {
        let (addresses, resolving) = Deferred::<Vec<SocketAddr>>::new();
        let h = Harness::new(addresses, RaceOptions::new("example.org:80"));
        h.handle.cancel();
        h.settle();
        assert!(resolving.is_cancelled());
        assert!(h.error_kind_is(|k| matches!(k, ErrorKind::Cancelled)));
        assert_eq!(h.clock.pending(), 0);
    }

    #[test]
    fn a_claim_wins_before_the_value_arrives_and_late_values_are_discarded() {
        let h = Harness::with(&["[::1]:80", "127.0.0.1:80"]);
        h.advance(250 * MS);
        let (first, second) = {
            let s = h.started.borrow();
            (s[0].claim.clone(), s[1].claim.clone())
        };
        assert_eq!(second.address(), a("127.0.0.1:80"));
        assert!(second.try_win());
        assert!(second.try_win(), "claiming twice is fine");
        assert!(!first.try_win(), "only one attempt wins");
        assert!(h.cancelled(0));
        assert_eq!(h.outcome(), None, "the winner's value is still to come");
        h.succeed(1, 2);
        assert_eq!(h.outcome(), Some(Ok(2)));
        assert!(h.discarded.borrow().is_empty());
    }

    #[test]
    fn two_successes_at_once_keep_the_first_and_discard_the_second() {
        let h = Harness::with(&["[::1]:80", "127.0.0.1:80"]);
        h.advance(250 * MS);
        h.started.borrow()[1].resolver.callback(1).expect("fires");
        h.started.borrow()[0].resolver.callback(0).expect("fires");
        h.settle();
        assert_eq!(h.outcome(), Some(Ok(1)));
        assert_eq!(*h.discarded.borrow(), [0]);
    }

    #[test]
    fn a_winner_that_fails_after_claiming_fails_the_race() {
        let h = Harness::with(&["[::1]:80", "127.0.0.1:80"]);
        assert!(h.started.borrow()[0].claim.try_win());
        h.advance(Duration::from_secs(1));
        assert_eq!(h.starts().len(), 1, "no attempt starts after a claim");
        h.fail(
            0,
            Error::new(
                ErrorKind::Other,
                "cannot connect to [::1]:80: the factory built no protocol for the connection",
            ),
        );
        assert_eq!(
            h.outcome(),
            Some(Err(
                "cannot connect to example.org:80 (tried [::1]:80): the factory built no protocol for the connection"
                    .to_owned()
            ))
        );
    }

    #[test]
    fn no_timeout_waits_for_the_attempts() {
        let options = RaceOptions {
            timeout: None,
            ..RaceOptions::new("example.org:80")
        };
        let h = Harness::new(Deferred::succeed(vec![a("127.0.0.1:80")]), options);
        h.advance(Duration::from_secs(3600));
        assert_eq!(h.outcome(), None);
        assert_eq!(h.clock.pending(), 0);
        h.succeed(0, 3);
        assert_eq!(h.outcome(), Some(Ok(3)));
    }

    #[test]
    fn targets_and_interleaving() {
        assert_eq!(target_name("example.org", 80), "example.org:80");
        assert_eq!(target_name("::1", 80), "[::1]:80");
        assert_eq!(target_name("fe80::1%eth0", 80), "[fe80::1%eth0]:80");
        assert_eq!(interleave(Vec::new()), Vec::<SocketAddr>::new());
        assert_eq!(
            interleave(vec![
                a("[::1]:1"),
                a("[::2]:1"),
                a("[::3]:1"),
                a("1.1.1.1:1")
            ]),
            [a("[::1]:1"), a("1.1.1.1:1"), a("[::2]:1"), a("[::3]:1")]
        );
        assert_eq!(
            interleave(vec![a("1.1.1.1:1"), a("1.1.1.1:1"), a("2.2.2.2:1")]),
            [a("1.1.1.1:1"), a("2.2.2.2:1")]
        );
    }
}
