//! Starting children at the edge of the descriptor limit, and failed starts: a typed
//! error, and nothing left behind (no descriptor, no child). One test in its own binary:
//! it lowers this process's descriptor limit and counts its descriptors.

use std::fs::File;
use std::time::Duration;

use torsion_reactor::testing::{PATIENCE, test_reactor};
use torsion_reactor::{ChildWatcher, ErrorKind, Process, ProcessOptions, ProcessProtocol, Reactor};

struct Quiet;

impl ProcessProtocol for Quiet {
    fn child_data_received(&mut self, _: &Process, _: i32, _: &[u8]) {}
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1 // the listing's own
}

/// Whether this process has any child at all, running or zombie.
fn has_children() -> bool {
    // SAFETY: a non-blocking wait that only reports (WNOWAIT keeps any zombie).
    let rc = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    rc == 0
}

fn set_fd_limit(soft: u64) -> u64 {
    // SAFETY: `limit` is valid for reads and writes.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let old = limit.rlim_cur;
        limit.rlim_cur = soft;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        old
    }
}

/// Opens /dev/null until the limit is reached, then closes `free` of them: exactly
/// `free` descriptor numbers are left below the limit.
fn fill_leaving(free: usize) -> Vec<File> {
    let mut fillers = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => fillers.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
            Err(e) => panic!("{e}"),
        }
    }
    for _ in 0..free {
        fillers.pop();
    }
    fillers
}

fn run_to_end(reactor: &Reactor, process: &Process) {
    reactor
        .run_until(PATIENCE, || process.has_ended())
        .expect("the child ends");
}

#[test]
fn out_of_descriptors_is_a_typed_error_and_nothing_leaks() {
    for watcher in [ChildWatcher::Auto, ChildWatcher::Sigchld] {
        let reactor = test_reactor();
        reactor.set_child_watcher(watcher);
        // Warm up: whatever the first spawn sets up for good (none expected) is counted.
        let p = reactor
            .spawn_process(Quiet, "true", [""; 0], &ProcessOptions::new())
            .unwrap();
        run_to_end(&reactor, &p);
        drop(p);
        reactor.iterate(Duration::ZERO).unwrap();
        let baseline = open_fds();
        assert!(!has_children());

        // Failed starts leave nothing behind either.
        for options in [
            ProcessOptions::new(),
            ProcessOptions::new().cwd("/torsion/no/such/dir"),
        ] {
            let err = reactor
                .spawn_process(Quiet, "torsion-no-such-program", [""; 0], &options)
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::SpawnFailed);
            assert_eq!(open_fds(), baseline, "{err}");
            assert!(!has_children(), "the failed child was reaped");
        }

        let old_limit = set_fd_limit(baseline as u64 + 64);
        let mut started = 0;
        let mut refused = 0;
        for free in 0..16 {
            let fillers = fill_leaving(free);
            let spawned = reactor.spawn_process(Quiet, "true", [""; 0], &ProcessOptions::new());
            match spawned {
                Ok(p) => {
                    started += 1;
                    run_to_end(&reactor, &p);
                }
                Err(err) => {
                    refused += 1;
                    assert_eq!(
                        err.kind(),
                        ErrorKind::TooManyOpenFiles,
                        "{watcher:?} with {free} free: {err}"
                    );
                }
            }
            drop(fillers);
            reactor.iterate(Duration::ZERO).unwrap();
            assert_eq!(
                open_fds(),
                baseline,
                "{watcher:?} with {free} free descriptors: something leaked"
            );
            assert!(
                !has_children(),
                "{watcher:?} with {free} free: a child is left"
            );
            assert_eq!(reactor.running_children(), 0);
        }
        set_fd_limit(old_limit);
        assert!(
            refused > 0 && started > 0,
            "{refused} refused, {started} started"
        );
    }
}
