//! Child processes, for real: output kept apart per descriptor, exit codes and signals,
//! stdin with flow control, typed start failures, the environment, the working directory,
//! extra descriptors, process groups and sessions, users, both ways of reaping, the
//! reactor's shutdown, and the async convenience.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion_reactor::testing::{PATIENCE, capture_logs, test_reactor, wait_for};
use torsion_reactor::{
    ChildFd, ChildWatcher, ConnectionLost, ErrorKind, OnReactorStop, Process, ProcessOptions,
    ProcessProtocol, ProcessStatus, Reactor,
};

#[derive(Default)]
struct Log {
    events: Vec<String>,
    out: BTreeMap<i32, Vec<u8>>,
    lost: BTreeMap<i32, ConnectionLost>,
    exited: Option<ProcessStatus>,
    ended: Option<ProcessStatus>,
    paused: usize,
    resumed: usize,
}

type Shared = Rc<RefCell<Log>>;

struct Rec(Shared);

impl ProcessProtocol for Rec {
    fn connection_made(&mut self, process: &Process) {
        self.0
            .borrow_mut()
            .events
            .push(format!("made {}", process.pid()));
    }
    fn child_data_received(&mut self, _: &Process, fd: i32, data: &[u8]) {
        let mut log = self.0.borrow_mut();
        assert!(!log.events.is_empty(), "data before connection_made");
        log.out.entry(fd).or_default().extend_from_slice(data);
    }
    fn child_connection_lost(&mut self, _: &Process, fd: i32, reason: &ConnectionLost) {
        let mut log = self.0.borrow_mut();
        log.events.push(format!("lost {fd}"));
        assert!(
            log.lost.insert(fd, reason.clone()).is_none(),
            "lost {fd} twice"
        );
    }
    fn process_exited(&mut self, process: &Process, status: ProcessStatus) {
        let mut log = self.0.borrow_mut();
        log.events.push(format!("exited {status}"));
        log.exited = Some(status);
        assert_eq!(process.status(), Some(status));
    }
    fn process_ended(&mut self, _: &Process, status: ProcessStatus) {
        let mut log = self.0.borrow_mut();
        log.events.push(format!("ended {status}"));
        log.ended = Some(status);
    }
    fn pause_writing(&mut self, _: &Process, fd: i32) {
        assert_eq!(fd, 0);
        self.0.borrow_mut().paused += 1;
    }
    fn resume_writing(&mut self, _: &Process, fd: i32) {
        assert_eq!(fd, 0);
        self.0.borrow_mut().resumed += 1;
    }
}

fn spawn(
    reactor: &Reactor,
    program: &str,
    args: &[&str],
    options: &ProcessOptions,
) -> (Process, Shared) {
    let log = Shared::default();
    let process = reactor
        .spawn_process(Rec(log.clone()), program, args, options)
        .unwrap_or_else(|e| panic!("{program} starts: {e}"));
    (process, log)
}

fn sh(reactor: &Reactor, script: &str, options: &ProcessOptions) -> (Process, Shared) {
    spawn(reactor, "sh", &["-c", script], options)
}

fn wait_ended(reactor: &Reactor, process: &Process) {
    reactor
        .run_until(PATIENCE, || process.has_ended())
        .expect("the child ends");
}

fn out(log: &Shared, fd: i32) -> String {
    String::from_utf8(log.borrow().out.get(&fd).cloned().unwrap_or_default()).unwrap()
}

fn gone(pid: i32) -> bool {
    // Reaped: no /proc entry (a zombie would still have one).
    std::fs::metadata(format!("/proc/{pid}")).is_err()
}

#[test]
fn stdout_and_stderr_are_kept_apart_and_the_exit_code_comes_last() {
    for watcher in [ChildWatcher::Auto, ChildWatcher::Sigchld] {
        let reactor = test_reactor();
        reactor.set_child_watcher(watcher);
        let (process, log) = sh(
            &reactor,
            "echo out1; echo err1 >&2; echo out2; printf 'no newline' >&2; exit 3",
            &ProcessOptions::new(),
        );
        assert!(
            log.borrow().events.is_empty(),
            "connection_made comes from the loop"
        );
        wait_ended(&reactor, &process);
        assert_eq!(out(&log, 1), "out1\nout2\n");
        assert_eq!(out(&log, 2), "err1\nno newline");
        let log = log.borrow();
        let pid = process.pid();
        assert_eq!(log.events.first(), Some(&format!("made {pid}")));
        assert_eq!(log.events.last().map(String::as_str), Some("ended exit 3"));
        assert!(log.events.contains(&"exited exit 3".to_string()));
        for fd in [0, 1, 2] {
            assert!(
                log.events.contains(&format!("lost {fd}")),
                "{:?}",
                log.events
            );
        }
        assert!(log.lost[&1].is_clean());
        assert_eq!(log.exited, Some(ProcessStatus::Exited(3)));
        assert_eq!(process.status().and_then(|s| s.code()), Some(3));
        assert!(
            gone(pid),
            "no zombie once the child has ended ({watcher:?})"
        );
        assert_eq!(reactor.running_children(), 0);
        assert_eq!(reactor.open_connections(), 0);
    }
}

#[test]
fn a_killed_child_reports_its_signal() {
    let reactor = test_reactor();
    let (process, log) = spawn(&reactor, "sleep", &["30"], &ProcessOptions::new());
    reactor
        .run_until(PATIENCE, || !log.borrow().events.is_empty())
        .unwrap();
    process.kill().unwrap();
    wait_ended(&reactor, &process);
    let status = log.borrow().ended.unwrap();
    assert_eq!(
        status,
        ProcessStatus::Signaled {
            signal: libc::SIGKILL,
            core_dumped: false
        }
    );
    assert_eq!(status.to_string(), "signal SIGKILL");
    assert_eq!(status.code(), None);
    let err = process.signal(libc::SIGTERM).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ProcessExited, "{err}");

    let (process, log) = spawn(&reactor, "sleep", &["30"], &ProcessOptions::new());
    process.terminate().unwrap();
    wait_ended(&reactor, &process);
    assert_eq!(
        log.borrow().ended.and_then(|s| s.signal()),
        Some(libc::SIGTERM)
    );
}

#[test]
fn stdin_is_written_with_flow_control_and_closed_after_the_flush() {
    let reactor = test_reactor();
    let (process, log) = spawn(&reactor, "cat", &[], &ProcessOptions::new());
    let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    process.write(&data);
    assert!(process.is_writing_paused(), "1 MiB is above the high mark");
    process.close_stdin();
    wait_ended(&reactor, &process);
    let log = log.borrow();
    assert_eq!(log.out.get(&1).map(Vec::len), Some(data.len()));
    assert!(log.out[&1] == data, "every byte, in order");
    assert_eq!((log.paused, log.resumed), (1, 0), "closing ends the flow");
    assert!(log.lost[&0].is_clean());
    assert_eq!(log.ended, Some(ProcessStatus::Exited(0)));
    let err = process.try_write(b"late").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionClosed);
}

#[test]
fn writing_where_the_child_has_no_input_pipe_is_refused() {
    let reactor = test_reactor();
    let (process, _log) = spawn(
        &reactor,
        "cat",
        &[],
        &ProcessOptions::new().stdin(ChildFd::Null),
    );
    let err = process.try_write(b"x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = process.write_to_child(1, b"x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    wait_ended(&reactor, &process); // cat read end of file from /dev/null
    assert_eq!(process.status(), Some(ProcessStatus::Exited(0)));
}

#[test]
fn programs_that_cannot_run_are_typed_errors_not_exit_127() {
    let reactor = test_reactor();
    let err = reactor
        .spawn_process(
            Rec(Shared::default()),
            "torsion-no-such-program",
            [""; 0],
            &ProcessOptions::new(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SpawnFailed);
    assert_eq!(
        err.io_error().map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound)
    );
    assert_eq!(
        err.to_string(),
        "cannot run \"torsion-no-such-program\": no such file or directory"
    );

    // A file without the execute bit.
    let path = std::env::temp_dir().join(format!("torsion-noexec-{}", std::process::id()));
    std::fs::write(&path, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = reactor
        .spawn_process(
            Rec(Shared::default()),
            &path,
            [""; 0],
            &ProcessOptions::new(),
        )
        .unwrap_err();
    std::fs::remove_file(&path).unwrap();
    // (root may execute any file with an execute bit, but not one with none)
    assert_eq!(err.kind(), ErrorKind::SpawnFailed);
    assert_eq!(
        err.io_error().map(|e| e.kind()),
        Some(std::io::ErrorKind::PermissionDenied),
        "{err}"
    );

    let err = reactor
        .spawn_process(
            Rec(Shared::default()),
            "true",
            [""; 0],
            &ProcessOptions::new().cwd("/torsion/no/such/dir"),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SpawnFailed);
    assert!(
        err.to_string().starts_with(
            "cannot start \"true\": cannot change to the working directory \"/torsion/no/such/dir\""
        ),
        "{err}"
    );

    let err = reactor
        .spawn_process(
            Rec(Shared::default()),
            "echo",
            ["a\0b"],
            &ProcessOptions::new(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(reactor.running_children(), 0);
    // Nothing was delivered to a protocol, and nothing is left to run.
    reactor.iterate(Duration::ZERO).unwrap();
}

#[test]
fn the_environment_is_inherited_set_removed_or_cleared() {
    let reactor = test_reactor();
    let home = std::env::var("HOME").unwrap_or_default();
    let (p, log) = sh(
        &reactor,
        "echo \"$HOME|$TORSION_X\"",
        &ProcessOptions::new().env("TORSION_X", "set"),
    );
    wait_ended(&reactor, &p);
    assert_eq!(out(&log, 1), format!("{home}|set\n"));

    let (p, log) = sh(
        &reactor,
        "echo \"[$HOME]\"",
        &ProcessOptions::new().env_remove("HOME"),
    );
    wait_ended(&reactor, &p);
    assert_eq!(out(&log, 1), "[]\n");

    // Cleared: `env` prints exactly what was set (found through this process's PATH).
    let (p, log) = spawn(
        &reactor,
        "env",
        &[],
        &ProcessOptions::new().env("ONLY", "1").env_clear(),
    );
    wait_ended(&reactor, &p);
    assert_eq!(out(&log, 1), "ONLY=1\n");
}

#[test]
fn the_working_directory_and_argv0_are_set() {
    let reactor = test_reactor();
    let dir = std::fs::canonicalize(std::env::temp_dir()).unwrap();
    let (p, log) = sh(
        &reactor,
        "pwd -P; echo $0",
        &ProcessOptions::new().cwd(&dir).arg0("renamed-sh"),
    );
    wait_ended(&reactor, &p);
    assert_eq!(out(&log, 1), format!("{}\nrenamed-sh\n", dir.display()));
}

#[test]
fn extra_descriptors_are_pipes_both_ways_and_the_rest_are_closed() {
    let reactor = test_reactor();
    // A descriptor of ours that would leak into a child (no close-on-exec flag).
    let (read, _write) = std::os::unix::net::UnixStream::pair().unwrap();
    // SAFETY: duplicating an open descriptor to a free number of at least 100, without
    // close-on-exec.
    let leaky = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&read), libc::F_DUPFD, 100) };
    assert!(leaky >= 100);
    let options = ProcessOptions::new()
        .child_fd(3, ChildFd::ParentReads)
        .child_fd(4, ChildFd::ParentWrites);
    let script = format!(
        "echo status >&3; cat <&4; for fd in 3 4 {leaky}; do \
         [ -e /proc/$$/fd/$fd ] && echo $fd open || echo $fd closed; done"
    );
    let (p, log) = sh(&reactor, &script, &options);
    p.write_to_child(4, b"via four\n").unwrap();
    p.close_child_fd(4);
    wait_ended(&reactor, &p);
    // SAFETY: closing the descriptor made above.
    unsafe { libc::close(leaky) };
    assert_eq!(out(&log, 3), "status\n");
    assert_eq!(
        out(&log, 1),
        format!("via four\n3 open\n4 open\n{leaky} closed\n"),
        "only what was asked for reaches the child"
    );
    assert!(log.borrow().lost.contains_key(&3));
}

#[test]
fn null_inherit_a_file_and_closed_descriptors() {
    let reactor = test_reactor();
    let path = std::env::temp_dir().join(format!("torsion-out-{}", std::process::id()));
    let file = File::create(&path).unwrap();
    let options = ProcessOptions::new()
        .stdin(ChildFd::Null)
        .stdout(ChildFd::from_fd(file))
        .stderr(ChildFd::ParentReads)
        .child_fd(5, ChildFd::Close);
    let (p, log) = sh(
        &reactor,
        "cat; echo to-the-file; [ -e /proc/$$/fd/5 ] && echo five-open >&2 || echo five-closed >&2",
        &options,
    );
    wait_ended(&reactor, &p);
    assert_eq!(p.status(), Some(ProcessStatus::Exited(0)));
    let mut text = String::new();
    File::open(&path)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(text, "to-the-file\n");
    assert_eq!(out(&log, 2), "five-closed\n");
    assert!(p.transport(1).is_none(), "stdout was not a pipe");
}

#[test]
fn process_exited_comes_before_process_ended_while_a_grandchild_holds_the_pipes() {
    let reactor = test_reactor();
    let (p, log) = sh(
        &reactor,
        "sleep 30 & echo started; wait",
        &ProcessOptions::new().process_group(0),
    );
    reactor
        .run_until(PATIENCE, || out(&log, 1) == "started\n")
        .unwrap();
    // The shell leads its own group: its pgid is its pid.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.pid())).unwrap();
    let pgrp: i32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pgrp, p.pid());
    p.kill().unwrap();
    reactor
        .run_until(PATIENCE, || log.borrow().exited.is_some())
        .unwrap();
    // The sleeping grandchild still holds stdout and stderr open: not ended.
    for _ in 0..5 {
        reactor.iterate(Duration::from_millis(5)).unwrap();
    }
    assert!(log.borrow().ended.is_none());
    assert!(gone(p.pid()), "reaped at process_exited");
    // The group outlives its leader; killing it ends the grandchild, and the pipes close.
    // SAFETY: signalling the process group our child created.
    assert_eq!(unsafe { libc::killpg(p.pid(), libc::SIGKILL) }, 0);
    wait_ended(&reactor, &p);
    assert_eq!(
        log.borrow().ended.and_then(|s| s.signal()),
        Some(libc::SIGKILL)
    );
}

#[test]
fn signal_group_reaches_the_childs_children() {
    let reactor = test_reactor();
    let (p, log) = sh(
        &reactor,
        "sleep 30 & echo started; wait",
        &ProcessOptions::new().new_session(),
    );
    reactor
        .run_until(PATIENCE, || out(&log, 1) == "started\n")
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.pid())).unwrap();
    let session: i32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(session, p.pid(), "a new session, led by the child");
    p.signal_group(libc::SIGTERM).unwrap();
    wait_ended(&reactor, &p);
    assert_eq!(
        log.borrow().ended.and_then(|s| s.signal()),
        Some(libc::SIGTERM)
    );
}

#[test]
fn user_and_group_where_permitted() {
    let reactor = test_reactor();
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    if root {
        let (p, log) = sh(
            &reactor,
            "id -u; id -g; id -G",
            &ProcessOptions::new().uid(65534).gid(65534),
        );
        wait_ended(&reactor, &p);
        assert_eq!(out(&log, 1), "65534\n65534\n65534\n");
    } else {
        // SAFETY: as above.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let (p, log) = sh(&reactor, "id -u", &ProcessOptions::new().uid(uid).gid(gid));
        wait_ended(&reactor, &p);
        assert_eq!(out(&log, 1), format!("{uid}\n"));
        let err = reactor
            .spawn_process(
                Rec(Shared::default()),
                "true",
                [""; 0],
                &ProcessOptions::new().uid(0),
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SpawnFailed);
        assert!(err.to_string().contains("cannot switch to user 0"), "{err}");
    }
}

#[test]
fn many_children_are_each_reaped_by_either_watcher() {
    for watcher in [ChildWatcher::Auto, ChildWatcher::Sigchld] {
        let reactor = test_reactor();
        reactor.set_child_watcher(watcher);
        let children: Vec<(Process, Shared)> = (0..20)
            .map(|i| sh(&reactor, &format!("exit {i}"), &ProcessOptions::new()))
            .collect();
        reactor
            .run_until(PATIENCE, || children.iter().all(|(p, _)| p.has_ended()))
            .unwrap_or_else(|e| panic!("{watcher:?}: {e}"));
        for (i, (p, _)) in children.iter().enumerate() {
            assert_eq!(p.status(), Some(ProcessStatus::Exited(i as i32)));
            assert!(gone(p.pid()));
        }
        assert_eq!(reactor.running_children(), 0);
    }
}

/// A user's SIGCHLD handler and the SIGCHLD child watcher share the signal: the children
/// are reaped with their status, and the user's handler runs too.
#[test]
fn a_user_sigchld_handler_runs_beside_the_reaper() {
    let reactor = test_reactor();
    reactor.set_child_watcher(ChildWatcher::Sigchld);
    let heard = Rc::new(Cell::new(0u32));
    let h = Rc::clone(&heard);
    reactor
        .add_signal_handler(libc::SIGCHLD, move || h.set(h.get() + 1))
        .expect("a SIGCHLD handler");
    let children: Vec<(Process, Shared)> = (0..5)
        .map(|i| sh(&reactor, &format!("exit {i}"), &ProcessOptions::new()))
        .collect();
    reactor
        .run_until(PATIENCE, || {
            children.iter().all(|(p, _)| p.has_ended()) && heard.get() > 0
        })
        .expect("every child reaped, and the user's handler ran");
    for (i, (p, _)) in children.iter().enumerate() {
        assert_eq!(p.status(), Some(ProcessStatus::Exited(i as i32)));
        assert!(gone(p.pid()));
    }
    assert!(reactor.remove_signal_handler(libc::SIGCHLD));
    // The reaper keeps the signal: a child started after the user's handler left is reaped.
    let (later, _log) = sh(&reactor, "exit 9", &ProcessOptions::new());
    reactor
        .run_until(PATIENCE, || later.has_ended())
        .expect("reaped without the user's handler");
    assert_eq!(later.status(), Some(ProcessStatus::Exited(9)));
}

#[test]
fn reaping_never_steals_other_children() {
    let reactor = test_reactor();
    reactor.set_child_watcher(ChildWatcher::Sigchld);
    // A child this reactor did not start, which ends first.
    let mut theirs = std::process::Command::new("true").spawn().unwrap();
    let (ours, _log) = sh(&reactor, "sleep 0.1", &ProcessOptions::new());
    wait_ended(&reactor, &ours);
    // Its status is still there for its owner.
    let status = theirs.wait().expect("not reaped by the reactor");
    assert!(status.success());
}

#[test]
fn a_graceful_stop_lets_a_child_finish_and_reads_its_last_output() {
    let reactor = test_reactor();
    reactor.set_shutdown_grace(PATIENCE);
    let (p, log) = sh(&reactor, "sleep 0.2; echo finished", &ProcessOptions::new());
    reactor.call_soon(|| Reactor::current().stop().unwrap());
    reactor.run().unwrap();
    assert!(p.has_ended());
    assert_eq!(out(&log, 1), "finished\n");
    assert_eq!(p.status(), Some(ProcessStatus::Exited(0)));
}

#[test]
fn a_child_still_running_after_the_grace_is_killed_and_logged() {
    let logs = capture_logs();
    let reactor = test_reactor();
    reactor.set_shutdown_grace(Duration::from_millis(200));
    let (p, log) = spawn(&reactor, "sleep", &["30"], &ProcessOptions::new());
    reactor.call_soon(|| Reactor::current().stop().unwrap());
    let started = Instant::now();
    reactor.run().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(p.has_ended(), "reaped before run() returned");
    assert_eq!(
        log.borrow().ended.and_then(|s| s.signal()),
        Some(libc::SIGKILL)
    );
    let warned = logs.lines_with(&format!("child {} (sleep) still running", p.pid()));
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(gone(p.pid()));
}

#[test]
fn a_child_can_be_terminated_at_the_stop_or_left_running() {
    let reactor = test_reactor();
    reactor.set_shutdown_grace(PATIENCE);
    let (p, _log) = spawn(
        &reactor,
        "sleep",
        &["30"],
        &ProcessOptions::new().on_reactor_stop(OnReactorStop::Terminate),
    );
    reactor.call_soon(|| Reactor::current().stop().unwrap());
    reactor.run().unwrap();
    assert_eq!(p.status().and_then(|s| s.signal()), Some(libc::SIGTERM));

    let (left, _log) = spawn(
        &reactor,
        "sleep",
        &["30"],
        &ProcessOptions::new().on_reactor_stop(OnReactorStop::Leave),
    );
    reactor.call_soon(|| Reactor::current().stop().unwrap());
    let started = Instant::now();
    reactor.run().unwrap();
    assert!(started.elapsed() < PATIENCE, "the stop did not wait for it");
    assert_eq!(left.status(), None);
    assert_eq!(reactor.running_children(), 1, "still watched");
    // SAFETY: signalling our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(left.pid(), libc::SIGKILL) }, 0);
    reactor
        .run_until(PATIENCE, || left.status().is_some())
        .expect("reaped when the reactor runs again");
    assert!(gone(left.pid()));
}

#[test]
fn a_panic_in_child_data_received_loses_that_pipe_only() {
    struct Panicky(Shared);
    impl ProcessProtocol for Panicky {
        fn child_data_received(&mut self, _: &Process, fd: i32, _: &[u8]) {
            if fd == 1 {
                panic!("bad output handler");
            }
        }
        fn child_connection_lost(&mut self, _: &Process, fd: i32, reason: &ConnectionLost) {
            self.0.borrow_mut().lost.insert(fd, reason.clone());
        }
        fn process_ended(&mut self, _: &Process, status: ProcessStatus) {
            self.0.borrow_mut().ended = Some(status);
        }
    }
    let reactor = test_reactor();
    reactor.set_fail_on_caught(false);
    let log = Shared::default();
    let p = reactor
        .spawn_process(
            Panicky(log.clone()),
            "sh",
            ["-c", "echo x; sleep 0.1; echo y >&2"],
            &ProcessOptions::new(),
        )
        .unwrap();
    wait_ended(&reactor, &p);
    let log = log.borrow();
    assert!(matches!(log.lost[&1], ConnectionLost::Panicked(ref m) if m == "bad output handler"));
    assert!(log.lost[&2].is_clean());
    assert!(log.ended.is_some());
}

#[test]
fn ended_is_a_deferred_with_the_status() {
    let reactor = test_reactor();
    let (p, _log) = sh(&reactor, "exit 7", &ProcessOptions::new());
    let status = wait_for(&reactor, p.ended()).unwrap();
    assert_eq!(status, ProcessStatus::Exited(7));
    // After the end, at once.
    assert_eq!(wait_for(&reactor, p.ended()).unwrap(), status);
}

#[test]
fn communicate_feeds_input_and_collects_all_output() {
    let reactor = test_reactor();
    let output = reactor
        .run_until_complete(async {
            let reactor = Reactor::current();
            let upper = reactor
                .create_subprocess_exec("tr", ["a-z", "A-Z"], &ProcessOptions::new())?
                .communicate("hello\n")
                .await?;
            // More output than the buffer limit: read on once communicate is called.
            let big = reactor
                .create_subprocess_exec(
                    "sh",
                    ["-c", "head -c 1000000 /dev/zero; echo oops >&2; exit 4"],
                    &ProcessOptions::new(),
                )?
                .communicate(Vec::new())
                .await?;
            Ok::<_, torsion_reactor::Error>((upper, big))
        })
        .unwrap()
        .unwrap();
    let (upper, big) = output;
    assert_eq!(upper.stdout, b"HELLO\n");
    assert!(upper.status.success());
    assert_eq!(big.stdout.len(), 1_000_000);
    assert_eq!(big.stderr, b"oops\n");
    assert_eq!(big.status, ProcessStatus::Exited(4));
}

/// The pids this process holds a pidfd for (from /proc/self/fdinfo).
fn pidfd_pids() -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_pidfd = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().contains("pidfd"));
        if !is_pidfd {
            continue;
        }
        let info = std::fs::read_to_string(
            std::path::Path::new("/proc/self/fdinfo").join(entry.file_name()),
        )
        .unwrap_or_default();
        if let Some(pid) = info
            .lines()
            .find_map(|l| l.strip_prefix("Pid:"))
            .and_then(|p| p.trim().parse().ok())
        {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn auto_watches_through_a_pidfd_and_sigchld_without_one() {
    let reactor = test_reactor();
    let (p, _log) = spawn(&reactor, "sleep", &["30"], &ProcessOptions::new());
    assert!(
        pidfd_pids().contains(&p.pid()),
        "this kernel has pidfds: Auto uses one"
    );
    p.kill().unwrap();
    wait_ended(&reactor, &p);
    assert!(!pidfd_pids().contains(&p.pid()), "closed once reaped");

    reactor.set_child_watcher(ChildWatcher::Sigchld);
    let (p, _log) = spawn(&reactor, "sleep", &["30"], &ProcessOptions::new());
    assert!(!pidfd_pids().contains(&p.pid()));
    p.kill().unwrap();
    wait_ended(&reactor, &p);
}
