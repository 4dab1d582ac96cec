//! The system calls behind child processes, in one small module: `fork` and what the
//! child does before `execve`, the close-on-exec pipe that reports a failed start,
//! `waitpid`, `kill` and `pidfd_open`. Every `unsafe` block says why it is sound.
//!
//! # Between `fork` and `exec`
//!
//! The child of a multi-threaded process may only make async-signal-safe calls until it
//! execs: no allocation, no locks, no panics. So everything is prepared before `fork`
//! ([`Prepared`]: C strings, pointer arrays, the descriptor plan, a scratch array), and
//! [`child`] does nothing but system calls on it, in this order:
//!
//! 1. signal handlers installed by this process (signal-hook's) are reset to the default
//!    and SIGPIPE (which Rust ignores) too, then every signal is unblocked: all signals
//!    were blocked by the parent around `fork`, so no handler of ours runs in the child;
//! 2. a new session or process group, if asked;
//! 3. the descriptors: every source is first moved above every number involved (so no
//!    `dup2` clobbers a source still needed), then put at its number; descriptors asked
//!    closed are closed, and every other descriptor is closed (`close_range` where the
//!    kernel has it, else one `close` per number up to the highest open one, found before
//!    `fork`);
//! 4. the working directory;
//! 5. groups, group, user (in that order: after `setuid` the others are not permitted);
//! 6. `execve` of each candidate path (the `PATH` search was done before `fork`), as
//!    `execvp` does: a missing file goes on to the next, a permission error is remembered.
//!
//! A failing step writes `(step, errno)` to the close-on-exec pipe and `_exit`s with 127;
//! the parent reads the pipe until end of file (the exec closed it: success) or a report
//! (failure: the child is reaped at once, and the error is returned).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU8, Ordering};

use libc::{c_char, c_int, pid_t};

/// The largest signal number on Linux (`SIGRTMAX`); signals above it do not exist.
const MAX_SIGNAL: c_int = 64;

/// A step of the child's setup, as reported through the pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Step {
    Signals = 1,
    Session = 2,
    ProcessGroup = 3,
    Descriptors = 4,
    Directory = 5,
    Groups = 6,
    Group = 7,
    User = 8,
    Exec = 9,
}

impl Step {
    fn from_u32(n: u32) -> Option<Step> {
        Some(match n {
            1 => Step::Signals,
            2 => Step::Session,
            3 => Step::ProcessGroup,
            4 => Step::Descriptors,
            5 => Step::Directory,
            6 => Step::Groups,
            7 => Step::Group,
            8 => Step::User,
            9 => Step::Exec,
            _ => return None,
        })
    }
}

/// Where a child descriptor comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// A copy of this (parent) descriptor.
    Fd(RawFd),
    /// Closed in the child.
    Close,
}

/// Everything the child needs, prepared before `fork` so that it allocates nothing.
pub(crate) struct Prepared {
    /// Candidate paths, in `PATH` order.
    pub(crate) paths: Vec<CString>,
    /// `argv` and `envp`: the strings, and NULL-terminated pointer arrays into them.
    pub(crate) argv: Vec<CString>,
    pub(crate) envp: Vec<CString>,
    pub(crate) cwd: Option<CString>,
    /// (child descriptor, where it comes from), sorted by child descriptor.
    pub(crate) fds: Vec<(RawFd, Source)>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    /// `setpgid(0, n)`: `Some(0)` makes the child a group leader.
    pub(crate) process_group: Option<pid_t>,
    pub(crate) new_session: bool,
}

/// A failed start: the step and the OS error.
#[derive(Debug)]
pub(crate) struct SpawnFailure {
    pub(crate) step: Option<Step>,
    pub(crate) error: io::Error,
}

impl SpawnFailure {
    fn parent(error: io::Error) -> SpawnFailure {
        SpawnFailure { step: None, error }
    }
}

fn cvt(rc: c_int) -> io::Result<c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A pipe, both ends closed on exec: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe2` writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: `pipe2` returned two new descriptors nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `/dev/null`, open for reading and writing, closed on exec.
pub(crate) fn dev_null() -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated path; the descriptor is owned at once.
    let fd = cvt(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    // SAFETY: `open` returned a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `close_range` works here (Linux 5.9): probed once, on an empty range.
#[cfg(target_os = "linux")]
fn have_close_range() -> bool {
    static STATE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 yes, 2 no
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            // SAFETY: closing a range no descriptor can be in (above any limit).
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    u32::MAX - 1,
                    u32::MAX - 1,
                    0 as c_int,
                )
            };
            let yes = rc == 0;
            STATE.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
            yes
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn have_close_range() -> bool {
    false
}

/// The highest descriptor open in this process (for closing descriptors one by one when
/// `close_range` is missing).
fn highest_open_fd() -> RawFd {
    let listed = std::fs::read_dir("/proc/self/fd").ok().map(|dir| {
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
            .max()
            .unwrap_or(2)
    });
    listed.unwrap_or_else(|| {
        // SAFETY: `sysconf` has no preconditions.
        let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
        max.clamp(3, 65536) as RawFd - 1
    })
}

/// Starts the child described by `prep`. Returns its pid once it has exec'd (the
/// close-on-exec pipe reached end of file); a failed setup or exec is reported with its
/// step, and the child is reaped before this returns.
pub(crate) fn spawn(prep: &Prepared) -> Result<pid_t, SpawnFailure> {
    let (report_read, report_write) = pipe().map_err(SpawnFailure::parent)?;
    let argv = pointers(&prep.argv);
    let envp = pointers(&prep.envp);
    // The child moves descriptors above every number involved before placing them.
    let floor = prep
        .fds
        .iter()
        .flat_map(|&(target, source)| match source {
            Source::Fd(fd) => [target, fd],
            Source::Close => [target, target],
        })
        .chain([report_read.as_raw_fd(), report_write.as_raw_fd(), 2])
        .max()
        .unwrap_or(2)
        + 1;
    let mut scratch = vec![-1 as RawFd; prep.fds.len()];
    let close_fallback = if have_close_range() {
        None
    } else {
        Some(highest_open_fd())
    };
    let plan = Plan {
        prep,
        argv: &argv,
        envp: &envp,
        floor,
        close_fallback,
    };

    // SAFETY: an all-zero `sigset_t` is valid storage for `sigfillset`/`pthread_sigmask`.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both sets are valid; blocking every signal in this thread until the child
    // exists (and until the parent restores the mask) keeps our handlers out of the child.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: the child runs only `child`, which makes async-signal-safe system calls on
    // memory prepared before this point, and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        child(&plan, report_write.as_raw_fd(), &mut scratch);
    }
    let forked = if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(pid)
    };
    // SAFETY: `old` is the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    let pid = forked.map_err(SpawnFailure::parent)?;
    drop(report_write);
    match read_report(&report_read) {
        Ok(None) => Ok(pid),
        Ok(Some(failure)) => {
            reap_blocking(pid);
            Err(failure)
        }
        Err(e) => {
            // Cannot tell how the child is doing: do not leave it behind.
            // SAFETY: signalling our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            reap_blocking(pid);
            Err(SpawnFailure::parent(e))
        }
    }
}

/// Reads the child's report: `None` at end of file (it exec'd).
fn read_report(fd: &OwnedFd) -> io::Result<Option<SpawnFailure>> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        let rest = &mut buf[got..];
        // SAFETY: `rest` is valid for writes of its length; `fd` is open.
        let n = unsafe { libc::read(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
        match n {
            0 => break,
            n if n > 0 => got += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    match got {
        0 => Ok(None),
        8 => {
            let step = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
            Ok(Some(SpawnFailure {
                step: Step::from_u32(step),
                error: io::Error::from_raw_os_error(errno),
            }))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the child's start report was cut short",
        )),
    }
}

/// Waits for a child known to be exiting now (its start failed, or it was killed).
pub(crate) fn reap_blocking(pid: pid_t) {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child; `status` is valid for writes.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// NULL-terminated pointers into `strings` (which must outlive them).
fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// What `child` works from.
struct Plan<'a> {
    prep: &'a Prepared,
    argv: &'a [*const c_char],
    envp: &'a [*const c_char],
    floor: RawFd,
    close_fallback: Option<RawFd>,
}

/// Writes `(step, errno)` to the report pipe and exits. Async-signal-safe.
fn fail(report: RawFd, step: Step, code: c_int) -> ! {
    let mut buf = [0u8; 8];
    let (a, b) = buf.split_at_mut(4);
    a.copy_from_slice(&(step as u32).to_ne_bytes());
    b.copy_from_slice(&code.to_ne_bytes());
    // SAFETY: `buf` is valid for reads of 8 bytes; a failed write only loses the detail.
    unsafe {
        while libc::write(report, buf.as_ptr().cast(), buf.len()) < 0 && errno() == libc::EINTR {}
        libc::_exit(127)
    }
}

/// This thread's `errno` (reading it allocates nothing: safe in the child).
fn errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Closes every descriptor in `from..=to` (an empty range does nothing).
fn close_range(from: RawFd, to: RawFd, fallback_max: Option<RawFd>) {
    if from > to {
        return;
    }
    match fallback_max {
        #[cfg(target_os = "linux")]
        None => {
            // SAFETY: closing descriptors of this (child) process.
            unsafe { libc::syscall(libc::SYS_close_range, from as u32, to as u32, 0 as c_int) };
        }
        #[cfg(not(target_os = "linux"))]
        None => {}
        Some(max) => {
            let mut fd = from;
            while fd <= to && fd <= max {
                // SAFETY: as above; closing a descriptor that is not open is harmless.
                unsafe { libc::close(fd) };
                fd += 1;
            }
        }
    }
}

/// The child's side: set up, then exec (see the module documentation). Never returns.
fn child(plan: &Plan<'_>, report: RawFd, scratch: &mut [RawFd]) -> ! {
    let prep = plan.prep;
    // SAFETY (for the whole function): we are the only thread of a freshly forked
    // process; every call below is an async-signal-safe system call on memory prepared
    // before the fork, and nothing here allocates or can panic.
    unsafe {
        // 1. Signals: our handlers back to the default, SIGPIPE too, then unblock.
        let mut sig = 1;
        while sig <= MAX_SIGNAL {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) == 0 {
                    let handler = old.sa_sigaction;
                    let caught = handler != libc::SIG_DFL && handler != libc::SIG_IGN;
                    if caught || sig == libc::SIGPIPE {
                        let mut dfl: libc::sigaction = std::mem::zeroed();
                        dfl.sa_sigaction = libc::SIG_DFL;
                        libc::sigaction(sig, &dfl, std::ptr::null_mut());
                    }
                }
            }
            sig += 1;
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) < 0 {
            fail(report, Step::Signals, errno());
        }

        // 2. Session or process group.
        if prep.new_session && libc::setsid() < 0 {
            fail(report, Step::Session, errno());
        }
        if let Some(group) = prep.process_group {
            if libc::setpgid(0, group) < 0 {
                fail(report, Step::ProcessGroup, errno());
            }
        }

        // 3. Descriptors. The report pipe moves up first (it must survive until exec).
        let report = libc::fcntl(report, libc::F_DUPFD_CLOEXEC, plan.floor);
        if report < 0 {
            libc::_exit(127); // nowhere to report to
        }
        for (&(_, source), slot) in prep.fds.iter().zip(scratch.iter_mut()) {
            if let Source::Fd(fd) = source {
                *slot = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, plan.floor);
                if *slot < 0 {
                    fail(report, Step::Descriptors, errno());
                }
            }
        }
        for (&(target, source), &moved) in prep.fds.iter().zip(scratch.iter()) {
            match source {
                Source::Fd(_) => {
                    // `dup2` clears close-on-exec on the new descriptor.
                    if libc::dup2(moved, target) < 0 {
                        fail(report, Step::Descriptors, errno());
                    }
                }
                Source::Close => {
                    libc::close(target);
                }
            }
        }
        // Every descriptor the child does not get is closed: the gaps between the kept
        // ones (sorted), then everything above them but the report pipe.
        let mut next: RawFd = 0;
        for &(target, source) in prep.fds.iter() {
            if let Source::Fd(_) = source {
                close_range(next, target - 1, plan.close_fallback);
                next = target + 1;
            }
        }
        close_range(next, report - 1, plan.close_fallback);
        close_range(report + 1, RawFd::MAX, plan.close_fallback);

        // 4. Working directory.
        if let Some(dir) = &prep.cwd {
            if libc::chdir(dir.as_ptr()) < 0 {
                fail(report, Step::Directory, errno());
            }
        }

        // 5. Groups, group, user.
        if let Some(gid) = prep.gid {
            if libc::setgroups(1, &gid) < 0 && errno() != libc::EPERM {
                fail(report, Step::Groups, errno());
            }
            if libc::setgid(gid) < 0 {
                fail(report, Step::Group, errno());
            }
        }
        if let Some(uid) = prep.uid {
            if prep.gid.is_none()
                && libc::setgroups(0, std::ptr::null()) < 0
                && errno() != libc::EPERM
            {
                fail(report, Step::Groups, errno());
            }
            if libc::setuid(uid) < 0 {
                fail(report, Step::User, errno());
            }
        }

        // 6. Exec, trying each candidate as execvp does.
        let mut saved = libc::ENOENT;
        let mut denied = false;
        for path in &prep.paths {
            libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
            let e = errno();
            match e {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => {
                    saved = e;
                    break;
                }
            }
            saved = e;
        }
        if denied && (saved == libc::ENOENT || saved == libc::ENOTDIR) {
            saved = libc::EACCES;
        }
        fail(report, Step::Exec, saved)
    }
}

/// `waitpid(pid, WNOHANG)`: the raw status once the child has ended, `None` while it runs.
pub(crate) fn try_wait(pid: pid_t) -> io::Result<Option<c_int>> {
    let mut status = 0;
    loop {
        // SAFETY: waiting (without blocking) for our own child; `status` is writable.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        match rc {
            0 => return Ok(None),
            rc if rc > 0 => return Ok(Some(status)),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Sends `signal` to `pid` (or to its process group, for a negative `pid`).
pub(crate) fn kill(pid: pid_t, signal: c_int) -> io::Result<()> {
    // SAFETY: `kill` has no memory-safety preconditions. The caller signals only a child
    // it has not reaped yet, so the pid cannot have been reused.
    cvt(unsafe { libc::kill(pid, signal) }).map(|_| ())
}

/// 0: not tried yet; 1: the kernel has `pidfd_open`; 2: it has not.
static PIDFD: AtomicU8 = AtomicU8::new(0);

/// Whether pidfds may be available (not known to be missing).
pub(crate) fn pidfds_available() -> bool {
    cfg!(target_os = "linux") && PIDFD.load(Ordering::Relaxed) != 2
}

/// A pidfd for our child `pid` (Linux 5.3): readable once the child has ended. `None`
/// where the kernel has no `pidfd_open` (checked once) or refuses it.
#[cfg(not(target_os = "linux"))]
pub(crate) fn pidfd_open(_pid: pid_t) -> Option<OwnedFd> {
    None
}

/// A pidfd for our child `pid` (Linux 5.3): readable once the child has ended. `None`
/// where the kernel has no `pidfd_open` (checked once) or refuses it.
#[cfg(target_os = "linux")]
pub(crate) fn pidfd_open(pid: pid_t) -> Option<OwnedFd> {
    if PIDFD.load(Ordering::Relaxed) == 2 {
        return None;
    }
    // SAFETY: `pidfd_open(pid, 0)` has no memory-safety preconditions.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as c_int) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOSYS) {
            PIDFD.store(2, Ordering::Relaxed);
        } else {
            log::debug!("pidfd_open({pid}) failed: {e}; watching it with SIGCHLD");
        }
        return None;
    }
    PIDFD.store(1, Ordering::Relaxed);
    // SAFETY: the kernel returned a new descriptor (close-on-exec) nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}
