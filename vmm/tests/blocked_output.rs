//! A stdout nobody reads must not keep nestor from ending: the serial port and the
//! virtio-console hand guest output to a bounded buffer, and the VM still ends on
//! `--timeout` or when the guest exits.

mod common;

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Longest a run may take here: the 2 s timeout, the bounded shutdown, a slow machine.
const MAX_RUN: Duration = Duration::from_secs(15);

/// A pipe whose buffer is full and whose read end stays open and unread: writing to it
/// blocks until the pipe is dropped.
struct FullPipe {
    _read_end: File,
    write_end: File,
}

fn set_nonblocking(file: &File, on: bool) {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on an fd this test owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(flags >= 0, "F_GETFL failed");
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) }, 0);
}

fn full_pipe() -> FullPipe {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new fds into the array. O_CLOEXEC keeps them out of the
    // children other tests start at the same time.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the fds are new and owned by nothing else.
    let (read_end, mut write_end) =
        unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // One page fills at once; a failure only means more filling.
    // SAFETY: fcntl on an fd this test owns.
    unsafe { libc::fcntl(write_end.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    set_nonblocking(&write_end, true);
    let chunk = [b'.'; 4096];
    loop {
        match write_end.write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the pipe: {e}"),
        }
    }
    // nestor must see an ordinary, blocking stdout.
    set_nonblocking(&write_end, false);
    FullPipe {
        _read_end: read_end,
        write_end,
    }
}

/// How a run with a stuck stdout ended.
struct Ending {
    status: Option<i32>,
    took: Duration,
    stderr: String,
}

/// Runs nestor with `args` and its stdout on a full pipe; kills it after [`MAX_RUN`].
fn run_with_stuck_stdout(args: &[&str]) -> Ending {
    let pipe = full_pipe();
    let started = Instant::now();
    let mut child = nestor()
        .arg("run")
        .args(args)
        .stdout(Stdio::from(pipe.write_end.try_clone().unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start nestor");
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > MAX_RUN {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    drop(pipe);
    Ending {
        status: status.map(|s| s.code().unwrap_or(-1)),
        took,
        stderr: stderr_reader.join().unwrap(),
    }
}

fn assert_ended_with(ending: &Ending, status: i32, what: &str) {
    assert!(
        ending.status.is_some(),
        "{what}: nestor was still running {:?} after it started; stderr:\n{}",
        ending.took,
        ending.stderr
    );
    assert_eq!(
        ending.status,
        Some(status),
        "{what}: ended after {:?}; stderr:\n{}",
        ending.took,
        ending.stderr
    );
}

fn assert_timeout_ends_it(args: &[&str], what: &str) {
    let ending = run_with_stuck_stdout(&[args, &["--timeout", "2"]].concat());
    assert_ended_with(&ending, 1, what);
    assert!(
        ending.stderr.contains("--timeout"),
        "{what}: {}",
        ending.stderr
    );
}

#[test]
fn timeout_ends_a_guest_whose_serial_output_nobody_reads() {
    if !kvm_available("timeout_ends_a_guest_whose_serial_output_nobody_reads") {
        return;
    }
    assert_timeout_ends_it(&["--cmdline", "probe=hold:60000"], "serial on stdout");
}

#[test]
fn timeout_ends_a_guest_whose_serial_and_console_output_nobody_reads() {
    if !kvm_available("timeout_ends_a_guest_whose_serial_and_console_output_nobody_reads") {
        return;
    }
    assert_timeout_ends_it(
        &["--console", "--cmdline", "probe=virtio-console,hold:60000"],
        "serial and virtio-console on stdout",
    );
}

#[test]
fn console_output_nobody_reads_does_not_stall_the_guest() {
    if !kvm_available("console_output_nobody_reads_does_not_stall_the_guest") {
        return;
    }
    let dir = TempDir::new("stuck-console");
    let log = dir.path().join("serial.log");
    let serial = format!("file={}", log.display());
    let ending = run_with_stuck_stdout(&[
        "--console",
        "--serial",
        &serial,
        "--cmdline",
        "probe=virtio-console",
        "--timeout",
        "120",
    ]);
    let verdicts = std::fs::read_to_string(&log).unwrap_or_default();
    assert_ended_with(&ending, 0, &format!("serial output:\n{verdicts}"));
    assert!(verdicts.contains("PROBE virtio-console ok"), "{verdicts}");
}

#[test]
fn a_guest_exit_ends_nestor_although_nobody_reads_its_output() {
    if !kvm_available("a_guest_exit_ends_nestor_although_nobody_reads_its_output") {
        return;
    }
    let ending = run_with_stuck_stdout(&[
        "--console",
        "--cmdline",
        "probe=boot,virtio-console",
        "--timeout",
        "120",
    ]);
    assert_ended_with(&ending, 0, "the guest exits through the exit port");
}

#[test]
fn console_and_serial_output_reach_stdout_in_the_order_written() {
    if !kvm_available("console_and_serial_output_reach_stdout_in_the_order_written") {
        return;
    }
    let output = run(&["--console", "--cmdline", "probe=virtio-console"]);
    assert_status(&output, 0);
    let out = stdout(&output);
    // The probe waits for the device to take its line before it prints its verdict.
    let console = out.find("virtio-console: hello from hvc0");
    let verdict = out.find("PROBE virtio-console ok");
    assert!(
        console.is_some() && verdict.is_some() && console < verdict,
        "{out}"
    );
    assert!(out.contains("PROBE done passed=1 failed=0"), "{out}");
}

/// A pipe whose read end is already closed: every write to it fails with EPIPE.
fn closed_pipe() -> File {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for both ends.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just created and are owned here only.
    let (read_end, write_end) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    drop(read_end);
    write_end
}

#[test]
fn closed_stdout_and_stderr_cost_nestor_its_messages_not_its_life() {
    if !kvm_available("closed_stdout_and_stderr_cost_nestor_its_messages_not_its_life") {
        return;
    }
    // As `nestor run --boot-timer 2>&1 | head -1` does once head has exited: a message
    // written with eprintln! would panic, and the panic handler dies under seccomp.
    let status = nestor()
        .args(["run", "--boot-timer", "-v", "--cmdline", "probe=boot"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(closed_pipe()))
        .stderr(Stdio::from(closed_pipe()))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}
