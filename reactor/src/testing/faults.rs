//! Fault injection under the transports (the `fault-injection` cargo feature): the system
//! calls the reactor makes for connections (read, write, shutdown), listeners (accept),
//! connects and the poller (register, wait) pass through here, and a plan for the current
//! thread makes them fail, on a script or at random from a seed.
//!
//! What can be injected, by [`Op`]:
//!
//! | op | transparent faults (the program must not notice) | hostile faults (it must stay correct) |
//! |---|---|---|
//! | `Read` | `EAGAIN`, `EINTR`, a 1-byte short read | `ECONNRESET` |
//! | `Write` | `EAGAIN`, `EINTR`, a 1-byte short write | `ECONNRESET`, `EPIPE` |
//! | `Shutdown` | | `ENOTCONN`, `EPIPE` |
//! | `Accept` | `EAGAIN`, `EINTR`, `ECONNABORTED`; `EMFILE`, `ENFILE`, `ENOBUFS` (each pauses accepting for 100 ms, so drawn a sixteenth as often) | `ENOMEM` (as rare) |
//! | `Connect` | | `ECONNREFUSED`, `EMFILE`, `ENFILE`, `ENOBUFS`, `ENETUNREACH` |
//! | `Register` | | `ENOMEM`, `ENOSPC` (`epoll_ctl`) |
//! | `Wait` | the wait returns at once; a spurious event for a registration; an event for a descriptor already closed | |
//!
//! A plan lives in a thread-local, so tests running in parallel do not disturb each other,
//! and it is drawn from a seed mixed with the thread's name (libtest names each test's
//! thread after the test), so one failing test can be rerun alone with the same faults.
//! When the `TORSION_FAULT_SEED` environment variable is set, every thread starts with the
//! [transparent](Profile::Transparent) profile at `TORSION_FAULT_RATE` percent (default 5):
//! that is how the reactor's whole test suite runs under faults
//! (`TORSION_FAULT_SEED=7 cargo test -p torsion-reactor --features fault-injection`).
//!
//! ```
//! use torsion_reactor::testing::faults::{self, Fault, Op, Step};
//!
//! // The next accept on this thread fails with EMFILE; the one after goes through.
//! faults::script(Op::Accept, [Step::Fail(Fault::Errno(libc::EMFILE)), Step::Pass]);
//! // Everything else at random: 10% of calls, resets included.
//! faults::random(faults::Profile::Hostile, 42, 10);
//! let _quiet = faults::suspend(); // none at all while `_quiet` lives
//! ```
//!
//! With the feature off none of this exists, and each hook in the reactor is an inlined
//! call of the system call itself (see `io/fault.rs`).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::time::Duration;

use crate::io::poller::Ready;

/// A hooked system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `read` on a connection.
    Read,
    /// `writev` on a connection.
    Write,
    /// `shutdown(SHUT_WR)` on a connection.
    Shutdown,
    /// `accept4` on a listener.
    Accept,
    /// `connect` on a new client socket.
    Connect,
    /// `epoll_ctl` add or modify (the poller's registration of a descriptor).
    Register,
    /// The poller's wait.
    Wait,
}

/// One injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with this `errno` (`EAGAIN` and `EINTR` included).
    Errno(i32),
    /// A read or write moves one byte only.
    Short,
    /// The wait returns at once, with whatever is ready then (a spurious wake-up of the loop).
    WakeEarly,
    /// The wait reports an event for a descriptor registered on this thread, whether or
    /// not it is ready (a spurious wake-up of one source).
    Spurious,
    /// The wait reports an event under a token that was deregistered (its descriptor may be
    /// closed and its number reused).
    Stale,
}

/// One step of a script: let the call through, or fail it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The call goes to the OS.
    Pass,
    /// The call fails (or, for the wait, is disturbed) this way.
    Fail(Fault),
}

/// Which faults the random plan draws from (see the module's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Faults a correct program cannot tell from a busy kernel: retries, short transfers,
    /// spurious and stale events, a full descriptor table for a moment. Every test must
    /// pass unchanged under them.
    Transparent,
    /// The transparent faults plus resets, broken pipes, refused connects and a poller
    /// out of memory: connections die, and the invariants must hold anyway.
    Hostile,
}

/// How many faults were injected on this thread, by [`Op`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    counts: HashMap<Op, u64>,
}

impl Injected {
    /// Faults injected into `op`.
    pub fn of(&self, op: Op) -> u64 {
        self.counts.get(&op).copied().unwrap_or(0)
    }

    /// Faults injected in all.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

struct Random {
    profile: Profile,
    /// Chance of a fault per hooked call, in percent.
    percent: u32,
}

/// Deregistered tokens kept for `Stale` events; registered ones for `Spurious`.
const KEYS_KEPT: usize = 64;

struct Plan {
    rng: u64,
    random: Option<Random>,
    scripts: HashMap<Op, VecDeque<Step>>,
    suspended: usize,
    injected: Injected,
    live: VecDeque<usize>,
    stale: VecDeque<usize>,
}

thread_local! {
    static PLAN: RefCell<Plan> = RefCell::new(Plan::from_env());
}

/// SplitMix64: small, fast, and good enough to pick faults.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed for this thread: `seed` mixed with the thread's name (FNV-1a).
fn thread_seed(seed: u64) -> u64 {
    let name = std::thread::current().name().unwrap_or("").to_owned();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    seed ^ hash
}

impl Plan {
    fn from_env() -> Plan {
        let mut plan = Plan {
            rng: 0,
            random: None,
            scripts: HashMap::new(),
            suspended: 0,
            injected: Injected::default(),
            live: VecDeque::new(),
            stale: VecDeque::new(),
        };
        let seed = std::env::var("TORSION_FAULT_SEED")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        if let Some(seed) = seed {
            let percent = std::env::var("TORSION_FAULT_RATE")
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .unwrap_or(5);
            plan.set_random(Profile::Transparent, seed, percent);
        }
        plan
    }

    fn set_random(&mut self, profile: Profile, seed: u64, percent: u32) {
        self.rng = thread_seed(seed);
        self.random = Some(Random {
            profile,
            percent: percent.min(100),
        });
    }

    fn below(&mut self, n: u64) -> u64 {
        next(&mut self.rng) % n.max(1)
    }

    /// The fault for this call of `op`, if any (scripts first, then the random plan).
    fn draw(&mut self, op: Op) -> Option<Fault> {
        if self.suspended > 0 {
            return None;
        }
        if let Some(script) = self.scripts.get_mut(&op) {
            if let Some(step) = script.pop_front() {
                return match step {
                    Step::Pass => None,
                    Step::Fail(fault) => self.count(op, fault),
                };
            }
        }
        let (profile, percent) = match &self.random {
            Some(r) => (r.profile, r.percent),
            None => return None,
        };
        if self.below(100) >= percent as u64 {
            return None;
        }
        let transparent: &[Fault] = match op {
            Op::Read | Op::Write => &[
                Fault::Errno(libc::EAGAIN),
                Fault::Errno(libc::EINTR),
                Fault::Short,
            ],
            Op::Accept => &[
                Fault::Errno(libc::EAGAIN),
                Fault::Errno(libc::EINTR),
                Fault::Errno(libc::ECONNABORTED),
                Fault::Errno(libc::EMFILE),
                Fault::Errno(libc::ENFILE),
                Fault::Errno(libc::ENOBUFS),
            ],
            Op::Wait => &[Fault::WakeEarly, Fault::Spurious, Fault::Stale],
            Op::Shutdown | Op::Connect | Op::Register => &[],
        };
        let hostile: &[Fault] = match (profile, op) {
            (Profile::Transparent, _) => &[],
            (_, Op::Read) => &[Fault::Errno(libc::ECONNRESET)],
            (_, Op::Write) => &[Fault::Errno(libc::ECONNRESET), Fault::Errno(libc::EPIPE)],
            (_, Op::Shutdown) => &[Fault::Errno(libc::ENOTCONN), Fault::Errno(libc::EPIPE)],
            (_, Op::Accept) => &[Fault::Errno(libc::ENOMEM)],
            (_, Op::Connect) => &[
                Fault::Errno(libc::ECONNREFUSED),
                Fault::Errno(libc::EMFILE),
                Fault::Errno(libc::ENFILE),
                Fault::Errno(libc::ENOBUFS),
                Fault::Errno(libc::ENETUNREACH),
            ],
            (_, Op::Register) => &[Fault::Errno(libc::ENOMEM), Fault::Errno(libc::ENOSPC)],
            (_, Op::Wait) => &[],
        };
        let n = (transparent.len() + hostile.len()) as u64;
        if n == 0 {
            return None;
        }
        let i = self.below(n) as usize;
        let fault = if i < transparent.len() {
            transparent[i]
        } else {
            hostile[i - transparent.len()]
        };
        // A listener out of descriptors stops accepting for 100 ms: drawn as often as a
        // retry, these would leave the accept queue to overflow under load, so they come
        // a sixteenth as often (the scripted tests drive them one by one).
        let exhaustion = matches!(
            fault,
            Fault::Errno(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if op == Op::Accept && exhaustion && self.below(16) != 0 {
            return None;
        }
        self.count(op, fault)
    }

    fn count(&mut self, op: Op, fault: Fault) -> Option<Fault> {
        *self.injected.counts.entry(op).or_insert(0) += 1;
        Some(fault)
    }
}

fn draw(op: Op) -> Option<Fault> {
    // `try_with`: a hook reached while the thread's locals are being destroyed passes.
    PLAN.try_with(|p| p.borrow_mut().draw(op)).ok().flatten()
}

/// Starts drawing faults at random on this thread: `percent` of the hooked calls fail
/// with a fault from `profile`, chosen with `seed` (mixed with the thread's name).
pub fn random(profile: Profile, seed: u64, percent: u32) {
    PLAN.with(|p| p.borrow_mut().set_random(profile, seed, percent));
}

/// Stops the random faults on this thread (scripts still run).
pub fn stop_random() {
    PLAN.with(|p| p.borrow_mut().random = None);
}

/// Queues `steps` for the next calls of `op` on this thread, before any random fault:
/// the first call gets the first step, and so on.
pub fn script(op: Op, steps: impl IntoIterator<Item = Step>) {
    PLAN.with(|p| p.borrow_mut().scripts.entry(op).or_default().extend(steps));
}

/// Faults injected on this thread so far.
pub fn injected() -> Injected {
    PLAN.with(|p| p.borrow().injected.clone())
}

/// Forgets this thread's plan: no scripts, no random faults, counts back to zero.
pub fn reset() {
    PLAN.with(|p| {
        let mut p = p.borrow_mut();
        p.random = None;
        p.scripts.clear();
        p.injected = Injected::default();
    });
}

/// While the returned guard lives, nothing is injected on this thread (for a test that
/// counts system calls, which faults would change).
#[must_use = "faults resume when the guard is dropped"]
pub fn suspend() -> Suspended {
    PLAN.with(|p| p.borrow_mut().suspended += 1);
    Suspended(())
}

/// See [`suspend`].
#[derive(Debug)]
pub struct Suspended(());

impl Drop for Suspended {
    fn drop(&mut self) {
        let _ = PLAN.try_with(|p| p.borrow_mut().suspended -= 1);
    }
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

// ---- the hooks (reached through `io/fault.rs`) -----------------------------------------

/// `read(2)` on a connection.
pub(crate) fn read(
    _fd: RawFd,
    buf: &mut [u8],
    f: impl FnOnce(&mut [u8]) -> io::Result<usize>,
) -> io::Result<usize> {
    match draw(Op::Read) {
        Some(Fault::Errno(code)) => Err(errno(code)),
        Some(Fault::Short) if buf.len() > 1 => f(&mut buf[..1]),
        _ => f(buf),
    }
}

/// `writev(2)` on a connection.
pub(crate) fn write(
    _fd: RawFd,
    bufs: &[IoSlice<'_>],
    f: impl FnOnce(&[IoSlice<'_>]) -> io::Result<usize>,
) -> io::Result<usize> {
    match draw(Op::Write) {
        Some(Fault::Errno(code)) => Err(errno(code)),
        Some(Fault::Short) => match bufs.iter().find(|b| !b.is_empty()) {
            Some(first) => f(&[IoSlice::new(&first[..1])]),
            None => f(bufs),
        },
        _ => f(bufs),
    }
}

/// Any other hooked call: it fails with the drawn `errno`, or goes through.
pub(crate) fn call<T>(op: Op, _fd: RawFd, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    match draw(op) {
        Some(Fault::Errno(code)) => Err(errno(code)),
        _ => f(),
    }
}

/// The poller registered (or re-registered) `key`.
pub(crate) fn registered(key: usize) {
    let _ = PLAN.try_with(|p| {
        let mut p = p.borrow_mut();
        if !p.live.contains(&key) {
            if p.live.len() == KEYS_KEPT {
                p.live.pop_front();
            }
            p.live.push_back(key);
        }
    });
}

/// The poller stopped watching `key`.
pub(crate) fn deregistered(key: usize) {
    let _ = PLAN.try_with(|p| {
        let mut p = p.borrow_mut();
        p.live.retain(|k| *k != key);
        if p.stale.len() == KEYS_KEPT {
            p.stale.pop_front();
        }
        p.stale.push_back(key);
    });
}

/// The poller's wait: `poll` waits up to the timeout it is given (zero when the wait is to
/// return at once); a spurious or stale event is then added to `extra`.
pub(crate) fn wait(
    extra: &mut Vec<Ready>,
    timeout: Option<Duration>,
    poll: impl FnOnce(Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    extra.clear();
    let fault = draw(Op::Wait);
    if fault == Some(Fault::WakeEarly) {
        return poll(Some(Duration::ZERO));
    }
    poll(timeout)?;
    let key = PLAN.try_with(|p| {
        let mut p = p.borrow_mut();
        let p = &mut *p;
        let pool = match fault {
            Some(Fault::Spurious) => &p.live,
            Some(Fault::Stale) => &p.stale,
            _ => return None,
        };
        let n = pool.len() as u64;
        if n == 0 {
            return None;
        }
        let key = pool[(next(&mut p.rng) % n) as usize];
        Some((key, next(&mut p.rng)))
    });
    if let Ok(Some((key, bits))) = key {
        extra.push(Ready {
            key,
            readable: bits & 1 != 0 || bits & 2 == 0,
            writable: bits & 2 != 0,
            closed: false,
        });
    }
    Ok(())
}
