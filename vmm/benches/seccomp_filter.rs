//! What a thread's filter adds to one syscall on its hot path, without KVM's noise: a forked
//! child installs the filter (or none) and times many calls that fail at once on fd -1.
//! `ioctl` is checked against the request list (KVM_RUN first); `write` is allowed without
//! conditions, which the kernel caches, so only the filtered syscall entry is left.
//!
//! Run: `cargo bench -p vmm --bench seccomp_filter`. The exit-level comparison (whole
//! KVM_RUN round trips) is `benches/seccomp.sh`.

use std::time::Instant;

use vmm::seccomp::{install, SeccompMode, ThreadKind};

const CALLS: u32 = 500_000;
const ROUNDS: usize = 7;
const KVM_RUN: libc::c_ulong = 0xae80;

/// Nanoseconds per call of `syscall`, timed in a child under `kind`'s filter in `mode`.
fn ns_per_call(kind: ThreadKind, mode: SeccompMode, syscall: fn()) -> f64 {
    let mut fds = [0; 2];
    // SAFETY: a two-element array for pipe(2).
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child makes only raw syscalls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        if install(kind, mode).is_err() {
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(1) };
        }
        let start = Instant::now();
        for _ in 0..CALLS {
            syscall();
        }
        let ns = start.elapsed().as_nanos() as f64 / f64::from(CALLS);
        let bytes = ns.to_ne_bytes();
        // SAFETY: writes a local buffer to the pipe, then leaves.
        unsafe {
            libc::write(fds[1], bytes.as_ptr().cast(), bytes.len());
            libc::_exit(0);
        }
    }
    let mut bytes = [0u8; 8];
    // SAFETY: reads into a local buffer; waits for our own child.
    unsafe {
        libc::close(fds[1]);
        assert_eq!(
            libc::read(fds[0], bytes.as_mut_ptr().cast(), 8),
            8,
            "the child did not report"
        );
        libc::close(fds[0]);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    f64::from_ne_bytes(bytes)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn kvm_run_on_bad_fd() {
    // SAFETY: fails with EBADF before touching memory.
    unsafe { libc::ioctl(-1, KVM_RUN, 0) };
}

fn write_on_bad_fd() {
    // SAFETY: as above.
    unsafe { libc::write(-1, std::ptr::null(), 0) };
}

fn main() {
    println!("median of {ROUNDS} rounds of {CALLS} calls, ns per call");
    for (what, kind, syscall) in [
        (
            "ioctl(KVM_RUN), vcpu filter",
            ThreadKind::Vcpu,
            kvm_run_on_bad_fd as fn(),
        ),
        ("write, vcpu filter", ThreadKind::Vcpu, write_on_bad_fd),
    ] {
        let mut on = Vec::new();
        let mut off = Vec::new();
        for _ in 0..ROUNDS {
            on.push(ns_per_call(kind, SeccompMode::On, syscall));
            off.push(ns_per_call(kind, SeccompMode::Off, syscall));
        }
        let (on, off) = (median(on), median(off));
        println!(
            "{what:<30} on {on:7.1}  off {off:7.1}  added {:6.1}  ratio {:.3}",
            on - off,
            on / off
        );
    }
}
