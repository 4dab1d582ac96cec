//! `systemd`: socket activation. The server spec [`SystemdServer`] and its parser, which
//! inherited file descriptor it adopts ([`resolve_listen_fd`]), and the adoption itself.
//!
//! systemd passes listening sockets as file descriptors 3, 4, ... and describes them in three
//! environment variables: `LISTEN_PID` (the process they are for), `LISTEN_FDS` (how many) and
//! `LISTEN_FDNAMES` (their `FileDescriptorName=`s, separated by `:`). Choosing a descriptor
//! only reads those values; [`resolve_listen_fd`] takes them as arguments ([`ListenEnv`]) so
//! it can be tested without a real environment, and neither touches nor closes any
//! descriptor. Listening on a [`SystemdServer`] then checks the descriptor's family and
//! takes it over (once per process).
//!
//! ```
//! use torsion_endpoints::FdSelector;
//! use torsion_endpoints::systemd::{resolve_listen_fd, ListenEnv, SystemdError};
//!
//! let env = ListenEnv {
//!     listen_pid: Some("4242".into()),
//!     listen_fds: Some("2".into()),
//!     listen_fdnames: Some("web:admin".into()),
//! };
//! assert_eq!(resolve_listen_fd(&FdSelector::Name("admin".into()), &env, 4242), Ok(4));
//! assert_eq!(resolve_listen_fd(&FdSelector::Index(0), &env, 4242), Ok(3));
//! assert!(matches!(
//!     resolve_listen_fd(&FdSelector::Index(0), &env, 1),
//!     Err(SystemdError::NotForThisProcess { .. })
//! ));
//! ```

use std::any::Any;
use std::fmt;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixListener;

use torsion_reactor::{
    BoxedFactory, Error, ErrorKind as ReactorErrorKind, Factory, ListeningPort, Reactor,
};

use crate::args::{Args, ParamSpec};
use crate::error::{EndpointError, ErrorKind};
use crate::grammar::quote;
use crate::spec::{ParamValue, ServerSpec, ServerType};
use crate::values;

/// The address family of a socket inherited from systemd.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocketDomain {
    /// `AF_INET` (`domain=INET`).
    Inet,
    /// `AF_INET6` (`domain=INET6`).
    Inet6,
    /// `AF_UNIX` (`domain=UNIX`).
    Unix,
}

impl SocketDomain {
    /// `INET`, `INET6` or `UNIX`, as written in descriptions.
    pub fn as_str(self) -> &'static str {
        match self {
            SocketDomain::Inet => "INET",
            SocketDomain::Inet6 => "INET6",
            SocketDomain::Unix => "UNIX",
        }
    }
}

/// Which inherited socket a `systemd` server adopts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FdSelector {
    /// The `N`th socket passed (`index=N`, from 0): file descriptor `3 + N`.
    Index(u32),
    /// The first socket with this name in `LISTEN_FDNAMES` (`name=NAME`; systemd's
    /// `FileDescriptorName=`).
    Name(String),
}

/// A server that adopts a listening socket passed by systemd socket activation (`systemd`).
///
/// ```
/// use torsion_endpoints::{parse_server, FdSelector, SocketDomain, SystemdServer};
///
/// let spec = parse_server("systemd:domain=INET6:name=web").unwrap();
/// assert_eq!(
///     spec.downcast_ref::<SystemdServer>(),
///     Some(&SystemdServer { domain: SocketDomain::Inet6, selector: FdSelector::Name("web".into()) })
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemdServer {
    /// The socket's address family.
    pub domain: SocketDomain,
    /// Which of the inherited sockets to adopt.
    pub selector: FdSelector,
}

impl SystemdServer {
    /// The file descriptor this server would adopt, given systemd's environment (see
    /// [`resolve_listen_fd`]).
    pub fn resolve_fd(&self, env: &ListenEnv, current_pid: u32) -> Result<i32, SystemdError> {
        resolve_listen_fd(&self.selector, env, current_pid)
    }
}

impl ServerSpec for SystemdServer {
    fn type_name(&self) -> &str {
        "systemd"
    }

    fn params(&self) -> Vec<(String, ParamValue)> {
        let selector = match &self.selector {
            FdSelector::Index(i) => ("index".to_owned(), ParamValue::Int((*i).into())),
            FdSelector::Name(n) => ("name".to_owned(), ParamValue::Str(n.clone())),
        };
        vec![
            (
                "domain".to_owned(),
                ParamValue::Str(self.domain.as_str().to_owned()),
            ),
            selector,
        ]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    /// Adopts the inherited socket this spec selects, once per process; the error says
    /// why none could be adopted.
    fn listen(&self, reactor: &Reactor, factory: BoxedFactory) -> Result<ListeningPort, Error> {
        self.listen_with(reactor, factory)
    }
}

impl fmt::Display for SystemdServer {
    /// The canonical description; it parses back to `self`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "systemd:domain={}", self.domain.as_str())?;
        match &self.selector {
            FdSelector::Index(i) => write!(f, ":index={i}"),
            FdSelector::Name(n) => write!(f, ":name={}", quote(n)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

const PARAMS: &[ParamSpec] = &[
    ParamSpec::positional("domain"),
    ParamSpec::positional("index"),
    ParamSpec::keyword("name"),
];

/// The largest `index=`: file descriptor `3 + index` must fit an `i32`.
const MAX_FD_INDEX: u32 = i32::MAX as u32 - 3;

/// `systemd` servers.
pub(crate) struct SystemdServerType;

impl ServerType for SystemdServerType {
    fn name(&self) -> &str {
        "systemd"
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ServerSpec>, EndpointError> {
        let b = args.bind(PARAMS)?;
        let domain = match b.require("domain")?.choice(&["INET", "INET6", "UNIX"])? {
            0 => SocketDomain::Inet,
            1 => SocketDomain::Inet6,
            _ => SocketDomain::Unix,
        };
        let selector = match (b.get("index"), b.get("name")) {
            (Some(_), Some(name)) => {
                return Err(args
                    .error(
                        ErrorKind::ConflictingParameters,
                        "a systemd server takes exactly one of index and name, not both",
                    )
                    .with_param("name")
                    .with_segment(name.segment()));
            }
            (None, None) => {
                return Err(args
                    .error(
                        ErrorKind::MissingParameter,
                        "a systemd server needs exactly one of index=N (the Nth inherited \
                         socket, from 0) and name=NAME (its FileDescriptorName)",
                    )
                    .with_param("index"));
            }
            (Some(index), None) => FdSelector::Index(index.u32_in(0, MAX_FD_INDEX)?),
            (None, Some(name)) => {
                let text = name.as_str();
                let valid = !text.is_empty()
                    && text.len() <= 255
                    && text.bytes().all(|c| c.is_ascii_graphic() && c != b':');
                if !valid {
                    return Err(name.error(
                        ErrorKind::InvalidValue,
                        "a systemd socket name is 1 to 255 printable ASCII characters, \
                         without spaces or colons",
                    ));
                }
                FdSelector::Name(text.to_owned())
            }
        };
        Ok(Box::new(SystemdServer { domain, selector }))
    }
}

// ---------------------------------------------------------------------------------------------
// Choosing an inherited descriptor

/// The first file descriptor systemd passes (`SD_LISTEN_FDS_START`).
pub const SD_LISTEN_FDS_START: i32 = 3;

/// The values of the socket-activation environment variables (`None` when unset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenEnv {
    /// `LISTEN_PID`: the process the sockets are for.
    pub listen_pid: Option<String>,
    /// `LISTEN_FDS`: how many sockets are passed.
    pub listen_fds: Option<String>,
    /// `LISTEN_FDNAMES`: their names, separated by `:`.
    pub listen_fdnames: Option<String>,
}

impl ListenEnv {
    /// Reads the three variables from this process's environment (a value that is not UTF-8
    /// is read lossily, and is then reported as malformed).
    pub fn from_process_env() -> Self {
        let var = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        ListenEnv {
            listen_pid: var("LISTEN_PID"),
            listen_fds: var("LISTEN_FDS"),
            listen_fdnames: var("LISTEN_FDNAMES"),
        }
    }
}

/// Why no inherited descriptor could be chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SystemdError {
    /// `LISTEN_PID` or `LISTEN_FDS` is not set: the process was not socket-activated.
    NotActivated {
        /// The variable that is missing.
        variable: &'static str,
    },
    /// The sockets were passed to another process (`LISTEN_PID` differs from ours, as when
    /// the variables were inherited by a child).
    NotForThisProcess {
        /// The pid in `LISTEN_PID`.
        listen_pid: u32,
        /// This process's pid.
        current_pid: u32,
    },
    /// A variable does not have the form systemd writes.
    Malformed {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `index=N` names a socket past the last one passed.
    IndexOutOfRange {
        /// The index asked for.
        index: u32,
        /// How many sockets were passed.
        count: u32,
    },
    /// `name=NAME` matches none of the sockets passed.
    NoSuchName {
        /// The name asked for.
        name: String,
        /// The distinct names of the sockets passed, in order of first appearance.
        available: Vec<String>,
    },
}

impl fmt::Display for SystemdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SystemdError::NotActivated { variable } => write!(
                f,
                "no sockets were passed by systemd: {variable} is not set \
                 (is the service started through a .socket unit?)"
            ),
            SystemdError::NotForThisProcess {
                listen_pid,
                current_pid,
            } => write!(
                f,
                "the sockets passed by systemd are for process {listen_pid} \
                 (LISTEN_PID), not this one ({current_pid})"
            ),
            SystemdError::Malformed {
                variable,
                value,
                reason,
            } => write!(f, "{variable}={value:?} is malformed: {reason}"),
            SystemdError::IndexOutOfRange { index, count } => write!(
                f,
                "index {index} is out of range: systemd passed {count} socket{} \
                 (valid indexes: {})",
                if *count == 1 { "" } else { "s" },
                match count {
                    0 => "none".to_owned(),
                    1 => "0".to_owned(),
                    n => format!("0 to {}", n - 1),
                }
            ),
            SystemdError::NoSuchName { name, available } => write!(
                f,
                "no socket named {name:?} was passed by systemd; names passed: {}",
                if available.is_empty() {
                    "none".to_owned()
                } else {
                    available.join(", ")
                }
            ),
        }
    }
}

impl std::error::Error for SystemdError {}

fn decimal(variable: &'static str, value: &str) -> Result<u32, SystemdError> {
    values::decimal_in(value, 0, u32::MAX.into())
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .map_err(|bad| SystemdError::Malformed {
            variable,
            value: value.to_owned(),
            reason: bad.reason,
        })
}

/// The most descriptors `LISTEN_FDS` may announce: Linux's default cap on open files per
/// process (`fs.nr_open`). A larger count cannot be real, so it is reported as malformed.
pub const MAX_LISTEN_FDS: u32 = 1 << 20;

/// The checked environment: how many sockets, and their names if `LISTEN_FDNAMES` is set.
fn checked(env: &ListenEnv, current_pid: u32) -> Result<(u32, Option<Vec<&str>>), SystemdError> {
    let pid_text = env
        .listen_pid
        .as_deref()
        .ok_or(SystemdError::NotActivated {
            variable: "LISTEN_PID",
        })?;
    let listen_pid = decimal("LISTEN_PID", pid_text)?;
    if listen_pid != current_pid {
        return Err(SystemdError::NotForThisProcess {
            listen_pid,
            current_pid,
        });
    }
    let fds_text = env
        .listen_fds
        .as_deref()
        .ok_or(SystemdError::NotActivated {
            variable: "LISTEN_FDS",
        })?;
    let count = decimal("LISTEN_FDS", fds_text)?;
    if count > MAX_LISTEN_FDS {
        return Err(SystemdError::Malformed {
            variable: "LISTEN_FDS",
            value: fds_text.to_owned(),
            reason: format!("more than {MAX_LISTEN_FDS} descriptors"),
        });
    }
    let names: Option<Vec<&str>> = match env.listen_fdnames.as_deref() {
        None => None,
        Some("") if count == 0 => Some(Vec::new()),
        Some(text) => Some(text.split(':').collect()),
    };
    if let Some(names) = &names {
        if names.len() != count as usize {
            return Err(SystemdError::Malformed {
                variable: "LISTEN_FDNAMES",
                value: env.listen_fdnames.clone().unwrap_or_default(),
                reason: format!(
                    "it has {} name{} but LISTEN_FDS is {count}",
                    names.len(),
                    if names.len() == 1 { "" } else { "s" }
                ),
            });
        }
    }
    Ok((count, names))
}

/// The name sockets get when `LISTEN_FDNAMES` is unset, as in `sd_listen_fds_with_names`.
const UNNAMED: &str = "unknown";

/// Every socket passed to this process, as `(file descriptor, name)` in order. Sockets are
/// named `unknown` when `LISTEN_FDNAMES` is unset, as `sd_listen_fds_with_names` does.
pub fn listen_fds(env: &ListenEnv, current_pid: u32) -> Result<Vec<(i32, String)>, SystemdError> {
    let (count, names) = checked(env, current_pid)?;
    Ok((0..count)
        .map(|i| {
            let name = names
                .as_ref()
                .and_then(|n| n.get(i as usize).copied())
                .unwrap_or(UNNAMED);
            (fd_of(i), name.to_owned())
        })
        .collect())
}

/// Descriptor number of the `index`th socket; `index` is at most [`MAX_LISTEN_FDS`].
fn fd_of(index: u32) -> i32 {
    SD_LISTEN_FDS_START + i32::try_from(index).unwrap_or(i32::MAX - SD_LISTEN_FDS_START)
}

/// The file descriptor `selector` picks among the sockets systemd passed to `current_pid`.
///
/// `Index(n)` is descriptor `3 + n`; `Name(s)` is the first socket named `s` (sockets are
/// named `unknown` when `LISTEN_FDNAMES` is unset). The environment is checked first: unset
/// variables give [`SystemdError::NotActivated`], a foreign `LISTEN_PID` gives
/// [`SystemdError::NotForThisProcess`], and values systemd would not write give
/// [`SystemdError::Malformed`].
pub fn resolve_listen_fd(
    selector: &FdSelector,
    env: &ListenEnv,
    current_pid: u32,
) -> Result<i32, SystemdError> {
    let (count, names) = checked(env, current_pid)?;
    match selector {
        FdSelector::Index(index) if *index < count => Ok(fd_of(*index)),
        FdSelector::Index(index) => Err(SystemdError::IndexOutOfRange {
            index: *index,
            count,
        }),
        FdSelector::Name(name) => {
            let found = match &names {
                Some(names) => names.iter().position(|n| n == name),
                None if count > 0 && name == UNNAMED => Some(0),
                None => None,
            };
            match found {
                Some(i) => Ok(fd_of(u32::try_from(i).unwrap_or(count))),
                None => {
                    let all =
                        names.unwrap_or_else(|| if count > 0 { vec![UNNAMED] } else { Vec::new() });
                    let mut seen = std::collections::HashSet::new();
                    let available: Vec<String> = all
                        .into_iter()
                        .filter(|n| seen.insert(*n))
                        .map(str::to_owned)
                        .collect();
                    Err(SystemdError::NoSuchName {
                        name: name.clone(),
                        available,
                    })
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Adopting it

fn socket_domain(fd: RawFd) -> Option<i32> {
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `domain`/`len` are valid for writes of the given size; a bad fd just fails.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut domain as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(domain)
}

impl SystemdServer {
    /// [`ServerSpec::listen`] with the factory's type kept (see [`crate::types::listen`]).
    pub(crate) fn listen_with<F: Factory>(
        &self,
        reactor: &Reactor,
        factory: F,
    ) -> Result<ListeningPort, Error> {
        adopt(self, reactor, factory)
    }
}

/// Adopts the socket `spec` selects: checked against the environment, its family, and the
/// descriptors adopted before.
fn adopt<F: Factory>(
    spec: &SystemdServer,
    reactor: &Reactor,
    factory: F,
) -> Result<ListeningPort, Error> {
    let env = ListenEnv::from_process_env();
    let fd = spec.resolve_fd(&env, std::process::id()).map_err(|e| {
        Error::new(
            ReactorErrorKind::InvalidInput,
            format!("systemd socket: {e}"),
        )
    })?;
    let (want, name) = match spec.domain {
        SocketDomain::Inet => (libc::AF_INET, "INET"),
        SocketDomain::Inet6 => (libc::AF_INET6, "INET6"),
        SocketDomain::Unix => (libc::AF_UNIX, "UNIX"),
    };
    match socket_domain(fd) {
        Some(d) if d == want => {}
        Some(_) => {
            return Err(Error::new(
                ReactorErrorKind::InvalidInput,
                format!("systemd socket: descriptor {fd} is not an {name} socket"),
            ));
        }
        None => {
            return Err(Error::new(
                ReactorErrorKind::InvalidInput,
                format!("systemd socket: descriptor {fd} is not an open socket"),
            ));
        }
    }
    // Each inherited descriptor is taken over once: a second adoption would close it twice
    // (or, once closed, take whatever later reused its number).
    static ADOPTED: std::sync::Mutex<Vec<RawFd>> = std::sync::Mutex::new(Vec::new());
    {
        let mut adopted = ADOPTED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if adopted.contains(&fd) {
            return Err(Error::new(
                ReactorErrorKind::InvalidInput,
                format!("systemd socket: descriptor {fd} was already adopted by this process"),
            ));
        }
        adopted.push(fd);
    }
    // SAFETY: systemd passed this descriptor to this process for it to own (LISTEN_PID
    // matched); we checked above that it is an open socket of the expected family, and
    // that it was not adopted before.
    match spec.domain {
        SocketDomain::Unix => {
            let listener = unsafe { UnixListener::from_raw_fd(fd) };
            reactor.adopt_unix_listener(listener, factory)
        }
        _ => {
            let listener = unsafe { TcpListener::from_raw_fd(fd) };
            reactor.adopt_tcp_listener(listener, factory)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pid: Option<&str>, fds: Option<&str>, names: Option<&str>) -> ListenEnv {
        ListenEnv {
            listen_pid: pid.map(str::to_owned),
            listen_fds: fds.map(str::to_owned),
            listen_fdnames: names.map(str::to_owned),
        }
    }

    fn name(s: &str) -> FdSelector {
        FdSelector::Name(s.to_owned())
    }

    #[test]
    fn index_and_name_resolve() {
        let e = env(Some("100"), Some("3"), Some("http:https:admin"));
        assert_eq!(resolve_listen_fd(&FdSelector::Index(0), &e, 100), Ok(3));
        assert_eq!(resolve_listen_fd(&FdSelector::Index(2), &e, 100), Ok(5));
        assert_eq!(resolve_listen_fd(&name("https"), &e, 100), Ok(4));
        assert_eq!(resolve_listen_fd(&name("admin"), &e, 100), Ok(5));
        assert_eq!(
            listen_fds(&e, 100),
            Ok(vec![
                (3, "http".to_owned()),
                (4, "https".to_owned()),
                (5, "admin".to_owned())
            ])
        );
    }

    #[test]
    fn first_of_repeated_names_wins() {
        let e = env(Some("7"), Some("2"), Some("web:web"));
        assert_eq!(resolve_listen_fd(&name("web"), &e, 7), Ok(3));
    }

    #[test]
    fn names_default_to_unknown() {
        let e = env(Some("7"), Some("2"), None);
        assert_eq!(resolve_listen_fd(&name("unknown"), &e, 7), Ok(3));
        assert_eq!(resolve_listen_fd(&FdSelector::Index(1), &e, 7), Ok(4));
    }

    #[test]
    fn out_of_range_and_unknown_names() {
        let e = env(Some("7"), Some("2"), Some("a:b"));
        assert_eq!(
            resolve_listen_fd(&FdSelector::Index(2), &e, 7),
            Err(SystemdError::IndexOutOfRange { index: 2, count: 2 })
        );
        let err = resolve_listen_fd(&name("c"), &e, 7).unwrap_err();
        assert_eq!(
            err,
            SystemdError::NoSuchName {
                name: "c".to_owned(),
                available: vec!["a".to_owned(), "b".to_owned()]
            }
        );
        assert_eq!(
            err.to_string(),
            "no socket named \"c\" was passed by systemd; names passed: a, b"
        );
        let none = env(Some("7"), Some("0"), Some(""));
        assert_eq!(
            resolve_listen_fd(&FdSelector::Index(0), &none, 7),
            Err(SystemdError::IndexOutOfRange { index: 0, count: 0 })
        );
    }

    #[test]
    fn other_process_and_unset() {
        let e = env(Some("8"), Some("1"), None);
        assert_eq!(
            resolve_listen_fd(&FdSelector::Index(0), &e, 9),
            Err(SystemdError::NotForThisProcess {
                listen_pid: 8,
                current_pid: 9
            })
        );
        assert_eq!(
            resolve_listen_fd(&FdSelector::Index(0), &env(None, Some("1"), None), 9),
            Err(SystemdError::NotActivated {
                variable: "LISTEN_PID"
            })
        );
        assert_eq!(
            resolve_listen_fd(&FdSelector::Index(0), &env(Some("9"), None, None), 9),
            Err(SystemdError::NotActivated {
                variable: "LISTEN_FDS"
            })
        );
    }

    #[test]
    fn malformed_values() {
        let cases = [
            env(Some("x"), Some("1"), None),
            env(Some(" 9"), Some("1"), None),
            env(Some("-9"), Some("1"), None),
            env(Some("9"), Some(""), None),
            env(Some("9"), Some("+1"), None),
            env(Some("9"), Some("99999999999"), None),
            env(Some("9"), Some("2147483647"), None),
            env(Some("9"), Some("1048577"), None),
            env(Some("9"), Some("2"), Some("only-one")),
            env(Some("9"), Some("1"), Some("a:b")),
        ];
        for e in cases {
            let err = resolve_listen_fd(&FdSelector::Index(0), &e, 9).unwrap_err();
            assert!(
                matches!(err, SystemdError::Malformed { .. }),
                "{e:?} gave {err:?}"
            );
            assert!(err.to_string().contains("malformed"), "{err}");
        }
    }

    #[test]
    fn messages_read_well() {
        assert_eq!(
            SystemdError::IndexOutOfRange { index: 3, count: 2 }.to_string(),
            "index 3 is out of range: systemd passed 2 sockets (valid indexes: 0 to 1)"
        );
        assert!(
            SystemdError::NotActivated {
                variable: "LISTEN_PID"
            }
            .to_string()
            .contains("LISTEN_PID is not set")
        );
    }
}
