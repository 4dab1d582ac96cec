//! `unix:` endpoints over real socket files: the mode, the `PATH.lock` rules (a stale lock
//! is taken over, a live one refuses), cleanup on stop, and Unix clients.

mod common;

use common::{Hello, reactor, wait};
use torsion::protocols::services::Echo;

use std::cell::RefCell;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use torsion::endpoints::{client_from_string, quote, server_from_string};
use torsion::reactor::{Address, Error, ListeningPort, Reactor, Transport, factory_fn};

const LONG: Duration = Duration::from_secs(30);

/// A socket path in the temp directory, unique to this test; it and its lock file are
/// removed when dropped.
struct TempPath {
    path: PathBuf,
    lock: PathBuf,
}

impl TempPath {
    fn new(name: &str) -> TempPath {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("torsion-ep-{}-{n}-{name}.sock", std::process::id()));
        let lock = PathBuf::from(format!("{}.lock", path.display()));
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&lock);
        TempPath { path, lock }
    }

    /// The path quoted for a description.
    fn quoted(&self) -> String {
        quote(&self.path.display().to_string())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// A child process that stays alive until dropped.
struct Alive(Child);

impl Alive {
    fn start() -> Alive {
        Alive(
            Command::new("sleep")
                .arg("600")
                .spawn()
                .expect("sleep runs"),
        )
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pid of a process that has exited (and been reaped).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("true runs");
    let pid = child.id();
    child.wait().expect("exits");
    pid
}

fn listen(r: &Reactor, description: &str) -> Result<ListeningPort, Error> {
    let endpoint = server_from_string(r, description).expect("parses");
    endpoint.listen(factory_fn(|_| Echo))
}

fn hello(r: &Reactor, description: &str) -> Result<Transport, Error> {
    let got: Rc<RefCell<Vec<u8>>> = Rc::default();
    let endpoint = client_from_string(r, description).expect("parses");
    let t = wait(r, endpoint.connect_protocol(Hello(got.clone())))?;
    r.run_until(LONG, || got.borrow().len() >= 5).unwrap();
    assert_eq!(*got.borrow(), b"hello");
    Ok(t)
}

fn lock_holder(lock: &Path) -> Option<u32> {
    std::fs::read_to_string(lock).ok()?.trim().parse().ok()
}

#[test]
fn listen_applies_the_mode_writes_the_lock_and_cleans_up_on_stop() {
    let r = reactor();
    let p = TempPath::new("mode");
    let port = listen(&r, &format!("unix:{}:mode=600", p.quoted())).unwrap();
    assert_eq!(port.local_addr(), Address::Unix(Some(p.path.clone())));
    let mode = std::fs::metadata(&p.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(lock_holder(&p.lock), Some(std::process::id()));

    let t = hello(&r, &format!("unix:{}", p.quoted())).unwrap();
    assert_eq!(t.peer_addr(), Address::Unix(Some(p.path.clone())));
    let creds = t
        .peer_credentials()
        .expect("Unix sockets have peer credentials");
    assert_eq!(creds.pid, Some(std::process::id() as i32));

    port.stop_listening();
    assert!(!p.path.exists(), "the socket path is removed");
    assert!(!p.lock.exists(), "the lock file is removed");
}

#[test]
fn the_default_mode_is_666_and_lockfile_0_writes_no_lock() {
    let r = reactor();
    let p = TempPath::new("nolock");
    let port = listen(&r, &format!("unix:{}:lockfile=0", p.quoted())).unwrap();
    let mode = std::fs::metadata(&p.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666);
    assert!(!p.lock.exists());
    port.stop_listening();
    assert!(!p.path.exists());
}

#[test]
fn a_stale_lock_from_a_dead_process_is_removed_and_the_path_reused() {
    let r = reactor();
    let p = TempPath::new("stale");
    // What a crashed server leaves: its socket file and its lock.
    drop(UnixListener::bind(&p.path).unwrap());
    assert!(p.path.exists());
    let dead = dead_pid();
    std::fs::write(&p.lock, format!("{dead}\n")).unwrap();

    let port = listen(&r, &format!("unix:{}", p.quoted())).unwrap();
    assert_eq!(lock_holder(&p.lock), Some(std::process::id()));
    hello(&r, &format!("unix:{}", p.quoted())).unwrap();
    port.stop_listening();
}

#[test]
fn a_lock_held_by_a_live_process_refuses_clearly_and_touches_nothing() {
    let r = reactor();
    let p = TempPath::new("live");
    let other = Alive::start();
    let holder = other.0.id();
    let _theirs = UnixListener::bind(&p.path).unwrap();
    std::fs::write(&p.lock, format!("{holder}\n")).unwrap();

    let err = listen(&r, &format!("unix:{}", p.quoted())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot listen on {}: the socket is in use by process {holder} (lock file {})",
            p.path.display(),
            p.lock.display()
        )
    );
    assert!(p.path.exists(), "the live server's socket is left alone");
    assert_eq!(lock_holder(&p.lock), Some(holder), "and so is its lock");
}

#[test]
fn a_stale_lock_never_removes_what_is_not_a_socket() {
    // A local user who can write PATH.lock (a stale or made-up pid) must not get the
    // server to delete whatever file the endpoint names.
    let r = reactor();
    let p = TempPath::new("not-a-socket");
    std::fs::write(&p.path, b"precious").unwrap();
    std::fs::write(&p.lock, b"not a pid\n").unwrap();
    let err = listen(&r, &format!("unix:{}", p.quoted())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot listen on {}: the path exists and is not a socket (left as it is)",
            p.path.display()
        )
    );
    assert_eq!(
        std::fs::read(&p.path).unwrap(),
        b"precious",
        "the file is untouched"
    );
}

#[test]
fn a_lock_file_that_is_a_link_is_never_written_through() {
    // A symbolic link planted at PATH.lock (dangling, or to a file with no pid in it):
    // the server replaces the link with its own lock file and leaves the target alone.
    let r = reactor();
    let p = TempPath::new("linked-lock");
    let victim = PathBuf::from(format!("{}.victim", p.path.display()));
    let dangling = PathBuf::from(format!("{}.nowhere", p.path.display()));
    std::fs::write(&victim, b"precious").unwrap();
    for target in [&dangling, &victim] {
        let _ = std::fs::remove_file(&p.lock);
        std::os::unix::fs::symlink(target, &p.lock).unwrap();
        let port = listen(&r, &format!("unix:{}", p.quoted())).unwrap();
        let meta = std::fs::symlink_metadata(&p.lock).unwrap();
        assert!(
            meta.file_type().is_file(),
            "the lock is a file of its own now"
        );
        assert_eq!(lock_holder(&p.lock), Some(std::process::id()));
        port.stop_listening();
    }
    assert!(
        !dangling.exists(),
        "nothing was created through the dangling link"
    );
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"precious",
        "the target is untouched"
    );
    let _ = std::fs::remove_file(&victim);
}

#[test]
fn without_a_lock_an_existing_socket_file_is_an_error() {
    let r = reactor();
    let p = TempPath::new("nolock-taken");
    let _theirs = UnixListener::bind(&p.path).unwrap();
    let err = listen(&r, &format!("unix:{}:lockfile=0", p.quoted())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot listen on {}: address already in use",
            p.path.display()
        )
    );
    assert!(p.path.exists());
    assert!(!p.lock.exists());
}

#[test]
fn unix_clients_name_the_path_when_they_fail() {
    let r = reactor();
    let p = TempPath::new("client");
    let endpoint = client_from_string(&r, &format!("unix:{}", p.quoted())).unwrap();
    let err = wait(&r, endpoint.connect(factory_fn(|_| Echo))).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot connect to {}: no such file or directory",
            p.path.display()
        )
    );
    assert_eq!(r.registered_sources(), 0);

    // lockfile=1 (Twisted's checkPID): no live holder, no attempt.
    let endpoint = client_from_string(&r, &format!("unix:{}:lockfile=1", p.quoted())).unwrap();
    let err = wait(&r, endpoint.connect(factory_fn(|_| Echo))).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot connect to {}: no live server holds its lock file {}",
            p.path.display(),
            p.lock.display()
        )
    );
    let port = listen(&r, &format!("unix:{}", p.quoted())).unwrap();
    hello(&r, &format!("unix:{}:lockfile=1:timeout=5", p.quoted())).unwrap();
    port.stop_listening();
}
