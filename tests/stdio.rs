//! Standard I/O as a transport, run as real child processes over real pipes and files:
//! `stdio_upper` (a LineReceiver on `standard_io`) with pipes, files, /dev/null and a
//! shell pipeline, its memory bounded when its output is not read, and `echo_server`
//! on the `stdio:` endpoint.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{eventually, example};

fn upper(input: &[u8]) -> (i32, Vec<u8>) {
    let mut child = Command::new(example("stdio_upper"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    (output.status.code().unwrap_or(-1), output.stdout)
}

#[test]
fn each_line_comes_back_upper_cased_the_last_one_too() {
    let (code, out) = upper(b"Hello\nworld\n\nlast line, no newline");
    assert_eq!(code, 0);
    assert_eq!(out, b"HELLO\nWORLD\n\nLAST LINE, NO NEWLINE");
    let (code, out) = upper(b"");
    assert_eq!((code, out.len()), (0, 0));
}

#[test]
fn files_work_as_standard_input_and_output() {
    let dir = std::env::temp_dir();
    let id = std::process::id();
    let input_path = dir.join(format!("torsion-stdio-in-{id}"));
    let output_path = dir.join(format!("torsion-stdio-out-{id}"));
    // Larger than one loop iteration reads (a file is always ready: read a slice a turn).
    let mut input = Vec::new();
    for i in 0..200_000 {
        input.extend_from_slice(format!("line {i}\n").as_bytes());
    }
    std::fs::write(&input_path, &input).unwrap();
    let status = Command::new(example("stdio_upper"))
        .stdin(File::open(&input_path).unwrap())
        .stdout(File::create(&output_path).unwrap())
        .status()
        .unwrap();
    let output = std::fs::read(&output_path).unwrap();
    std::fs::remove_file(&input_path).unwrap();
    std::fs::remove_file(&output_path).unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(output, input.to_ascii_uppercase());

    let status = Command::new(example("stdio_upper"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "/dev/null in and out");
}

#[test]
fn the_shell_pipeline_from_the_issue_counts_every_byte() {
    // `yes | head -c 100M | stdio_upper | wc -c`, smaller for a debug build.
    let script = format!(
        "yes | head -c 8M | '{}' | wc -c",
        example("stdio_upper").display()
    );
    let o = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8(o.stdout).unwrap().trim(), "8388608");
}

/// A process's state letter and resident memory, from /proc.
fn state_and_rss(pid: u32) -> (char, usize) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.trim_start().chars().next())
        .unwrap_or('?');
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (state, rss_kib)
}

/// Bytes waiting in a pipe (`FIONREAD` works on either end).
fn queued(fd: &impl AsRawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    n as usize
}

#[test]
fn memory_stays_bounded_when_nobody_reads_the_output() {
    const TOTAL: usize = 16 * 1024 * 1024;
    let mut child = Command::new(example("stdio_upper"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let witness = stdin.as_raw_fd();
    let mut stdout = child.stdout.take().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let w = written.clone();
    let writer = std::thread::spawn(move || {
        let line = b"all work and no play makes jack a dull boy\n";
        let chunk: Vec<u8> = line.iter().copied().cycle().take(4096).collect();
        let mut sent = 0;
        while sent < TOTAL {
            let n = (TOTAL - sent).min(chunk.len());
            stdin.write_all(&chunk[..n]).unwrap();
            sent += n;
            w.store(sent, Ordering::SeqCst);
        }
    });
    // Nobody reads its output: it must stop reading its input. That is the state where
    // its input pipe is full while it sleeps (it would be running if it were reading).
    let capacity = {
        // SAFETY: F_GETPIPE_SZ on an open pipe.
        unsafe { libc::fcntl(witness, libc::F_GETPIPE_SZ) as usize }
    };
    let stalled = eventually(Duration::from_secs(30), || {
        let full = queued(&RawFdRef(witness)) + 4096 >= capacity;
        full && state_and_rss(pid).0 == 'S' && queued(&RawFdRef(witness)) + 4096 >= capacity
    });
    assert!(stalled, "stdio_upper never stopped reading its input");
    let absorbed = written.load(Ordering::SeqCst);
    let (_, rss_kib) = state_and_rss(pid);
    assert!(
        absorbed < 4 * 1024 * 1024,
        "it took in {absorbed} bytes without writing them out"
    );
    assert!(rss_kib < 24 * 1024, "resident memory {rss_kib} KiB");
    // Now read everything: all of it comes out, and it ends cleanly.
    let mut total = 0;
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|b| !b.is_ascii_lowercase()));
        total += n;
    }
    writer.join().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(total, TOTAL);
    assert!(status.success());
}

/// A raw descriptor owned elsewhere (the writer thread's pipe), for `queued`.
struct RawFdRef(std::os::fd::RawFd);

impl AsRawFd for RawFdRef {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

#[test]
fn echo_server_serves_one_connection_on_the_stdio_endpoint() {
    let o = Command::new(example("echo_server"))
        .arg("stdio:")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(b"echo me\nand me")?;
            drop(stdin);
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "exits when its connection ends");
    assert_eq!(
        o.stdout, b"echo me\nand me",
        "stdout is the connection only"
    );
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(err, "listening on standard I/O\n");
}

/// Reads from `fd` until what was read ends with `want` (or the deadline passes).
fn read_until(fd: &impl AsRawFd, want: &[u8]) -> Vec<u8> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while !got.ends_with(want) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "no {want:?} in time; got {got:?}");
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
        let mut buf = [0u8; 4096];
        // SAFETY: reading into a valid buffer from an open descriptor.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            got.extend_from_slice(&buf[..n as usize]);
        }
    }
    got
}

#[test]
fn a_terminal_works_as_standard_input_and_output() {
    use std::os::unix::fs::OpenOptionsExt;
    // A pseudo-terminal: we hold the master side, the program gets the slave as its
    // standard input and output (one open file, as in a real terminal session).
    // SAFETY: plain calls; the master descriptor is owned by `master` at once.
    let master = unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        <File as std::os::fd::FromRawFd>::from_raw_fd(fd)
    };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: `name` has room for the path.
    assert_eq!(
        unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) },
        0
    );
    // SAFETY: ptsname_r wrote a NUL-terminated path.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_str()
        .unwrap()
        .to_owned();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .unwrap();
    // Line mode, without echo or output processing, so what comes back is what it wrote.
    // SAFETY: termios calls on an open terminal with a valid struct.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(slave.as_raw_fd(), &mut t), 0);
        t.c_lflag &= !libc::ECHO;
        t.c_oflag &= !libc::OPOST;
        assert_eq!(libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t), 0);
    }
    let mut child = Command::new(example("stdio_upper"))
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    (&master).write_all(b"hello, terminal\n").unwrap();
    assert_eq!(read_until(&master, b"\n"), b"HELLO, TERMINAL\n");
    (&master).write_all(b"second\n").unwrap();
    assert_eq!(read_until(&master, b"\n"), b"SECOND\n");
    // Ctrl-D at the start of a line: end of input.
    (&master).write_all(&[4]).unwrap();
    let status = common::wait_timeout(&mut child, Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(0));
    // SAFETY: F_GETFL on our own copy of the terminal's open file.
    let flags = unsafe { libc::fcntl(slave.as_raw_fd(), libc::F_GETFL) };
    assert_eq!(
        flags & libc::O_NONBLOCK,
        0,
        "the terminal is blocking again, for the shell that comes next"
    );
}
