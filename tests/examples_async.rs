//! Runs the async examples (`tasks`, `future`) as child processes and checks their output.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::example;

/// Runs the example to completion (it must exit by itself) and returns its stdout lines.
fn run(name: &str) -> (Vec<String>, Duration) {
    let started = Instant::now();
    let out = Command::new(example(name))
        .env("RUST_LOG", "off")
        .output()
        .expect("the example starts");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{name} exited with {:?}; stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    (stdout.lines().map(str::to_string).collect(), took)
}

#[test]
fn tasks_example_prints_each_task_number_once_then_completes() {
    let (lines, _) = run("tasks");
    assert_eq!(lines.len(), 11, "{lines:?}");
    let mut numbers: Vec<u32> = lines[..10]
        .iter()
        .map(|l| {
            l.strip_prefix("Processing ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected line {l:?}"))
        })
        .collect();
    // Tasks start in the order they were spawned.
    assert_eq!(numbers, (0..10).collect::<Vec<_>>());
    numbers.dedup();
    assert_eq!(numbers.len(), 10, "each task prints its own number");
    assert_eq!(lines[10], "Tasks Completed");
}

#[test]
fn future_example_prints_the_result_after_two_seconds() {
    let (lines, took) = run("future");
    assert_eq!(lines, ["Future Completed"]);
    assert!(
        took >= Duration::from_secs(2),
        "the task sleeps 2 s first ({took:?})"
    );
}
