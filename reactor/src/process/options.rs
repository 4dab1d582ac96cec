//! [`ProcessOptions`]: how a child is started (environment, working directory, which of
//! its descriptors are pipes, inherited or closed, process group or session, user and
//! group) and what happens to it when its reactor stops.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// How one of the child's descriptors is set up (Twisted's `childFDs`).
///
/// Descriptors the options do not mention are closed in the child (as in Twisted); the
/// default options make 0 a pipe the parent writes and 1 and 2 pipes the parent reads.
#[derive(Clone, Debug)]
pub enum ChildFd {
    /// A pipe the child writes and the parent reads (its output: stdout, stderr, a status
    /// pipe on 3): what arrives is [`child_data_received`](super::ProcessProtocol) with
    /// this descriptor's number. Twisted's `'r'`.
    ParentReads,
    /// A pipe the child reads and the parent writes (its input): written with
    /// [`Process::write`](super::Process::write) (descriptor 0) or
    /// [`Process::write_to_child`](super::Process::write_to_child). Twisted's `'w'`.
    ParentWrites,
    /// The parent's descriptor of the same number, shared with the child (its terminal,
    /// say).
    Inherit,
    /// A copy of this descriptor (a file, a socket): shell redirection, inetd.
    Fd(Rc<OwnedFd>),
    /// `/dev/null`.
    Null,
    /// Closed in the child.
    Close,
}

impl ChildFd {
    /// [`ChildFd::Fd`] from anything that owns a descriptor (`File`, `TcpStream`, ...).
    pub fn from_fd(fd: impl Into<OwnedFd>) -> ChildFd {
        ChildFd::Fd(Rc::new(fd.into()))
    }
}

/// What happens to a child that is still running when its reactor stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnReactorStop {
    /// Let it finish during the shutdown grace period (its input is flushed and closed,
    /// its output read), then `SIGKILL` it, with a warning in the log. The default.
    #[default]
    Kill,
    /// `SIGTERM` when the shutdown starts, then as [`Kill`](OnReactorStop::Kill).
    Terminate,
    /// Leave it running, unsignalled: the shutdown does not wait for it, and its pipes are
    /// closed with the other connections. It is reaped if the reactor runs again (a
    /// reactor that is closed instead no longer watches it: once it ends it stays a zombie
    /// until this process exits).
    Leave,
}

/// How to start a child process ([`Reactor::spawn_process`](crate::Reactor::spawn_process)).
///
/// The defaults: the parent's environment, its working directory, descriptor 0 a pipe the
/// parent writes and 1 and 2 pipes it reads (every other descriptor closed), same
/// process group, user and group, killed after the shutdown grace if still running when
/// the reactor stops.
///
/// ```
/// use torsion_reactor::{ChildFd, ProcessOptions};
///
/// let options = ProcessOptions::new()
///     .env_clear()
///     .env("PATH", "/usr/bin:/bin")
///     .env("LANG", "C")
///     .cwd("/tmp")
///     .stdin(ChildFd::Null)
///     .stderr(ChildFd::Inherit)
///     .child_fd(3, ChildFd::ParentReads) // a status pipe
///     .process_group(0); // its own process group
/// # let _ = options;
/// ```
#[derive(Clone, Debug)]
pub struct ProcessOptions {
    pub(crate) env_clear: bool,
    /// `Some(value)`: set; `None`: removed.
    pub(crate) env: BTreeMap<OsString, Option<OsString>>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) fds: BTreeMap<RawFd, ChildFd>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) process_group: Option<i32>,
    pub(crate) new_session: bool,
    pub(crate) arg0: Option<OsString>,
    pub(crate) on_stop: OnReactorStop,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions {
            env_clear: false,
            env: BTreeMap::new(),
            cwd: None,
            fds: BTreeMap::from([
                (0, ChildFd::ParentWrites),
                (1, ChildFd::ParentReads),
                (2, ChildFd::ParentReads),
            ]),
            uid: None,
            gid: None,
            process_group: None,
            new_session: false,
            arg0: None,
            on_stop: OnReactorStop::Kill,
        }
    }
}

impl ProcessOptions {
    /// The defaults (see the type's documentation).
    pub fn new() -> ProcessOptions {
        ProcessOptions::default()
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .insert(key.as_ref().to_owned(), Some(value.as_ref().to_owned()));
        self
    }

    /// Removes an environment variable from what the child inherits.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.insert(key.as_ref().to_owned(), None);
        self
    }

    /// Starts from an empty environment instead of the parent's (variables set with
    /// [`env`](ProcessOptions::env) are kept). Twisted's default; asyncio's and std's is
    /// to inherit.
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self.env.retain(|_, v| v.is_some());
        self
    }

    /// The child's working directory (default: the parent's). A relative program path is
    /// looked up from the parent's working directory, as with `std::process::Command`.
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Sets up child descriptor `fd` (any number: 3 for a status pipe, ...).
    pub fn child_fd(mut self, fd: RawFd, how: ChildFd) -> Self {
        self.fds.insert(fd, how);
        self
    }

    /// Sets up the child's standard input (descriptor 0).
    pub fn stdin(self, how: ChildFd) -> Self {
        self.child_fd(0, how)
    }

    /// Sets up the child's standard output (descriptor 1).
    pub fn stdout(self, how: ChildFd) -> Self {
        self.child_fd(1, how)
    }

    /// Sets up the child's standard error (descriptor 2).
    pub fn stderr(self, how: ChildFd) -> Self {
        self.child_fd(2, how)
    }

    /// Runs the child as this user (`setuid`; needs the privilege). Without
    /// [`gid`](ProcessOptions::gid), its supplementary groups are dropped where permitted.
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    /// Runs the child with this group (`setgid`, and it as the only supplementary group
    /// where permitted).
    pub fn gid(mut self, gid: u32) -> Self {
        self.gid = Some(gid);
        self
    }

    /// Puts the child in process group `pgid` (`setpgid`); 0 makes it the leader of a
    /// new group whose id is its pid (see [`Process::signal_group`](super::Process)).
    pub fn process_group(mut self, pgid: i32) -> Self {
        self.process_group = Some(pgid);
        self
    }

    /// Starts the child in a new session (`setsid`): no controlling terminal, its own
    /// process group.
    pub fn new_session(mut self) -> Self {
        self.new_session = true;
        self
    }

    /// The child's `argv[0]` (default: the program as given).
    pub fn arg0(mut self, arg0: impl AsRef<OsStr>) -> Self {
        self.arg0 = Some(arg0.as_ref().to_owned());
        self
    }

    /// What happens to the child if it is still running when the reactor stops (default
    /// [`OnReactorStop::Kill`]).
    pub fn on_reactor_stop(mut self, what: OnReactorStop) -> Self {
        self.on_stop = what;
        self
    }

    /// The environment the child gets.
    pub(crate) fn environment(&self) -> Vec<(OsString, OsString)> {
        let mut env: BTreeMap<OsString, OsString> = if self.env_clear {
            BTreeMap::new()
        } else {
            std::env::vars_os().collect()
        };
        for (key, value) in &self.env {
            match value {
                Some(value) => env.insert(key.clone(), value.clone()),
                None => env.remove(key),
            };
        }
        env.into_iter().collect()
    }
}
