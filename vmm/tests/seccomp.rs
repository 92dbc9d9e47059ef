//! Seccomp: every thread of a running nestor is filtered, each kind's compiled filter kills
//! on what it forbids and lets through what its thread needs, and `--seccomp` is checked.

mod common;

use std::ffi::CString;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use vmm::seccomp::{install, SeccompMode, ThreadKind};

/// One thread of a running process as /proc shows it.
#[derive(Debug)]
struct ThreadStatus {
    name: String,
    seccomp_mode: Option<u32>,
    filters: Option<u32>,
}

fn status_field(status: &str, key: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|value| value.trim().parse().ok())
}

fn threads_of(pid: u32) -> Vec<ThreadStatus> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| {
            let status = std::fs::read_to_string(task.ok()?.path().join("status")).ok()?;
            Some(ThreadStatus {
                name: status
                    .lines()
                    .find_map(|l| l.strip_prefix("Name:"))?
                    .trim()
                    .to_owned(),
                seccomp_mode: status_field(&status, "Seccomp:"),
                filters: status_field(&status, "Seccomp_filters:"),
            })
        })
        .collect()
}

fn is_filtered(thread: &ThreadStatus) -> bool {
    thread.seccomp_mode == Some(2) && thread.filters.is_some_and(|n| n >= 1)
}

/// The names nestor gives its threads, plus KVM's own per-VM kernel worker (the NX huge
/// page recovery task), which the kernel starts inside the VM's process.
fn is_known_thread_name(name: &str) -> bool {
    let numbered = |prefix: &str| {
        name.strip_prefix(prefix).is_some_and(|rest| {
            let digits = rest.trim_start_matches(|c: char| c.is_ascii_lowercase());
            !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
        })
    };
    name == "nestor"
        || name == "fault-relay"
        || name == "out-stdout"
        || name == "out-serial"
        || name == "api"
        || numbered("vcpu")
        || numbered("dev-")
        || name.starts_with("kvm-")
}

/// A nestor run that is killed if the test fails before it ends.
struct RunningNestor(Option<Child>);

impl RunningNestor {
    fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    fn finish(mut self) -> Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for RunningNestor {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls until every expected thread exists and every thread is filtered, or gives up.
fn wait_for_filtered_threads(pid: u32, expected: &[&str]) -> Vec<ThreadStatus> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let threads = threads_of(pid);
        let all_there = expected
            .iter()
            .all(|name| threads.iter().any(|t| t.name == *name));
        if (all_there && threads.iter().all(is_filtered)) || Instant::now() > deadline {
            return threads;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_thread_of_a_running_vm_is_filtered_and_named_for_its_role() {
    if !kvm_available("every_thread_of_a_running_vm_is_filtered_and_named_for_its_role") {
        return;
    }
    let dir = TempDir::new("seccomp-threads");
    let disk = dir.file("disk.img", &[0u8; 64 << 10]);
    let api_socket = dir.path().join("api.sock");
    // The probes activate the devices, so their workers exist while the guest holds.
    let child = nestor()
        .args(["run", "--cpus", "2", "--rng", "--timeout", "120"])
        .arg("--disk")
        .arg(format!("path={}", disk.display()))
        .arg("--api-socket")
        .arg(&api_socket)
        .args(["--cmdline", "probe=virtio-blk,virtio-rng,hold:3000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start nestor");
    let nestor_run = RunningNestor(Some(child));
    let expected = [
        "nestor",
        "vcpu0",
        "vcpu1",
        "dev-blk0",
        "dev-rng0",
        "out-stdout",
        "api",
    ];
    let threads = wait_for_filtered_threads(nestor_run.pid(), &expected);

    for name in expected {
        assert!(
            threads.iter().any(|t| t.name == name),
            "no thread {name}: {threads:?}"
        );
    }
    for thread in &threads {
        assert!(is_filtered(thread), "unfiltered thread: {threads:?}");
        // Exactly one: no thread starts another after installing its own filter, so none
        // runs under an inherited one too.
        assert_eq!(thread.filters, Some(1), "stacked filters: {threads:?}");
        assert!(
            is_known_thread_name(&thread.name),
            "a thread whose name says nothing of its role: {threads:?}"
        );
    }

    let output = nestor_run.finish();
    assert_status(&output, 0);
    assert!(
        stdout(&output).contains("PROBE done passed=3 failed=0"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn the_fault_relay_thread_of_nested_mode_runs_under_its_own_filter() {
    if !kvm_available("the_fault_relay_thread_of_nested_mode_runs_under_its_own_filter") {
        return;
    }
    let child = nestor()
        .args(["run", "--dma-engine", "iommu=nested", "--timeout", "120"])
        .args(["--cmdline", "probe=nested-s1,hold:3000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start nestor");
    let nestor_run = RunningNestor(Some(child));
    let expected = ["nestor", "vcpu0", "dev-dma0", "fault-relay"];
    let threads = wait_for_filtered_threads(nestor_run.pid(), &expected);
    let relay = threads
        .iter()
        .find(|t| t.name == "fault-relay")
        .unwrap_or_else(|| panic!("no fault-relay thread: {threads:?}"));
    assert!(is_filtered(relay), "{threads:?}");
    assert_eq!(relay.filters, Some(1), "stacked filters: {threads:?}");
    let output = nestor_run.finish();
    assert_status(&output, 0);
    assert!(
        stdout(&output).contains("PROBE done passed=2 failed=0"),
        "{}",
        stdout(&output)
    );
}

/// How a forked child ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Exited(i32),
    Signalled(i32),
}

/// Exit status of a child whose filter could not be installed.
const INSTALL_FAILED: i32 = 100;

/// Forks; the child installs `kind`'s filter under `mode`, runs `syscall` and exits 0.
/// `syscall` runs in a forked copy of a multi-threaded process: it must not allocate.
fn in_filtered_child(kind: ThreadKind, mode: SeccompMode, syscall: &dyn Fn()) -> Ending {
    // SAFETY: the child only makes raw syscalls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain syscalls on valid arguments; _exit never returns.
        unsafe {
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            if install(kind, mode).is_err() {
                libc::_exit(INSTALL_FAILED);
            }
            syscall();
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid, "waitpid failed");
    if libc::WIFSIGNALED(status) {
        Ending::Signalled(libc::WTERMSIG(status))
    } else {
        Ending::Exited(libc::WEXITSTATUS(status))
    }
}

/// Where the forbidden `openat` creates a file (it does in log mode).
fn new_file_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("nestor-seccomp-{}", std::process::id()))
}

/// A syscall to make in a filtered child, and what to call it in a failure message.
type NamedSyscall = (&'static str, Box<dyn Fn()>);

/// What no nestor thread may do.
fn forbidden_syscalls() -> Vec<NamedSyscall> {
    let new_file = CString::new(new_file_path().into_os_string().into_encoded_bytes()).unwrap();
    vec![
        (
            "execve",
            Box::new(|| {
                let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
                let envp = [std::ptr::null()];
                // SAFETY: NUL-terminated argument and environment arrays.
                unsafe { libc::execve(c"/bin/true".as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            }),
        ),
        (
            "openat",
            Box::new(move || {
                // SAFETY: a valid path; the fd, if any, dies with the child.
                unsafe {
                    libc::openat(
                        libc::AT_FDCWD,
                        new_file.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY,
                        0o600,
                    )
                };
            }),
        ),
        (
            "socket",
            Box::new(|| {
                // SAFETY: no pointers involved.
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            }),
        ),
        (
            "mmap PROT_EXEC",
            Box::new(|| {
                // SAFETY: a fresh anonymous mapping, never touched.
                unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        4096,
                        libc::PROT_READ | libc::PROT_EXEC,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
            }),
        ),
    ]
}

/// A syscall on the thread kind's hot path (on a bad fd: allowed, and it fails harmlessly).
fn hot_path_syscall(kind: ThreadKind) -> Box<dyn Fn()> {
    match kind {
        // SAFETY for all: no memory is touched by a call on fd -1.
        ThreadKind::Vcpu => Box::new(|| unsafe {
            libc::ioctl(-1, 0xae80, 0); // KVM_RUN
        }),
        ThreadKind::Vmm | ThreadKind::FaultRelay => Box::new(|| unsafe {
            libc::epoll_wait(-1, std::ptr::null_mut(), 1, 0);
        }),
        ThreadKind::DeviceWorker => Box::new(|| unsafe {
            libc::pread(-1, std::ptr::null_mut(), 0, 0);
            libc::fdatasync(-1);
        }),
        ThreadKind::Api => Box::new(|| unsafe {
            libc::poll(std::ptr::null_mut(), 0, 0);
            libc::accept4(
                -1,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            );
            libc::ioctl(-1, libc::FIONBIO, 0);
        }),
        ThreadKind::HostOutput => Box::new(|| unsafe {
            libc::write(-1, std::ptr::null(), 0);
            // Waking a local word nobody waits on reads and writes nothing.
            let word = 0u32;
            libc::syscall(
                libc::SYS_futex,
                &word,
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1,
            );
        }),
    }
}

fn allocate_and_write() {
    let message = b"";
    // SAFETY: a zero-length write of a valid buffer.
    unsafe { libc::write(2, message.as_ptr().cast(), 0) };
    // SAFETY: an anonymous read-write mapping, released at once.
    unsafe {
        let page = libc::mmap(
            std::ptr::null_mut(),
            1 << 20,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        libc::munmap(page, 1 << 20);
    }
}

#[test]
fn each_filter_kills_on_a_forbidden_syscall() {
    for kind in ThreadKind::ALL {
        for (what, syscall) in forbidden_syscalls() {
            assert_eq!(
                in_filtered_child(kind, SeccompMode::On, &*syscall),
                Ending::Signalled(libc::SIGSYS),
                "{} filter on {what}",
                kind.name()
            );
        }
    }
}

#[test]
fn each_filter_allows_what_its_thread_does() {
    for kind in ThreadKind::ALL {
        let hot = hot_path_syscall(kind);
        let ending = in_filtered_child(kind, SeccompMode::On, &|| {
            hot();
            allocate_and_write();
        });
        assert_eq!(ending, Ending::Exited(0), "{} filter", kind.name());
    }
}

/// After a guest failure each vCPU thread reads its own registers for the report.
#[test]
fn the_vcpu_filter_allows_reading_a_failed_vcpus_state() {
    const KVM_GET_REGS: libc::c_ulong = 0x8090_ae81;
    const KVM_GET_SREGS: libc::c_ulong = 0x8138_ae83;
    const KVM_GET_MP_STATE: libc::c_ulong = 0x8004_ae98;
    let ending = in_filtered_child(ThreadKind::Vcpu, SeccompMode::On, &|| {
        for request in [KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_MP_STATE] {
            // SAFETY: on fd -1 the call fails before touching memory.
            unsafe { libc::ioctl(-1, request, 0) };
        }
    });
    assert_eq!(ending, Ending::Exited(0));
}

/// vCPU threads forward a passthrough device's configuration and BAR accesses (pread and
/// pwrite on the device fd), switch its MSI-X on and off and move its mapped BARs'
/// memory slots; no other thread does.
#[test]
fn only_the_vcpu_filter_allows_driving_a_passthrough_device() {
    const VFIO_DEVICE_SET_IRQS: libc::c_ulong = 0x3b6e;
    const KVM_SET_USER_MEMORY_REGION: libc::c_ulong = 0x4020_ae46;
    const KVM_IRQFD: libc::c_ulong = 0x4020_ae76;
    let drive = || {
        let mut byte = 0u8;
        // SAFETY: on fd -1 the calls fail before touching memory.
        unsafe {
            libc::pread(-1, (&mut byte as *mut u8).cast(), 1, 0);
            libc::pwrite(-1, (&byte as *const u8).cast(), 1, 0);
            libc::ioctl(-1, VFIO_DEVICE_SET_IRQS, 0);
            libc::ioctl(-1, KVM_SET_USER_MEMORY_REGION, 0);
            libc::ioctl(-1, KVM_IRQFD, 0);
            let now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::ppoll(std::ptr::null_mut(), 0, &now, std::ptr::null());
        }
    };
    let ending = in_filtered_child(ThreadKind::Vcpu, SeccompMode::On, &drive);
    assert_eq!(ending, Ending::Exited(0));
    for kind in [
        ThreadKind::Vmm,
        ThreadKind::DeviceWorker,
        ThreadKind::FaultRelay,
    ] {
        let ending = in_filtered_child(kind, SeccompMode::On, &|| {
            // SAFETY: as above.
            unsafe { libc::ioctl(-1, VFIO_DEVICE_SET_IRQS, 0) };
        });
        assert_eq!(ending, Ending::Signalled(libc::SIGSYS), "{}", kind.name());
        let ending = in_filtered_child(kind, SeccompMode::On, &|| {
            // SAFETY: as above.
            unsafe { libc::ioctl(-1, KVM_SET_USER_MEMORY_REGION, 0) };
        });
        assert_eq!(ending, Ending::Signalled(libc::SIGSYS), "{}", kind.name());
        let ending = in_filtered_child(kind, SeccompMode::On, &|| {
            // SAFETY: as above.
            unsafe { libc::ioctl(-1, KVM_IRQFD, 0) };
        });
        assert_eq!(ending, Ending::Signalled(libc::SIGSYS), "{}", kind.name());
    }
}

/// The virtio-iommu's requests are served on the vCPU that notified them, and for a
/// passthrough device behind it a MAP or UNMAP is a host IOMMU call: vCPU threads may make
/// those, no other thread may.
#[test]
fn only_the_vcpu_filter_allows_host_iommu_mappings() {
    const HOST_MAPPING_IOCTLS: [(&str, libc::c_ulong); 4] = [
        ("VFIO_IOMMU_MAP_DMA", 0x3b71),
        ("VFIO_IOMMU_UNMAP_DMA", 0x3b72),
        ("IOMMU_IOAS_MAP", 0x3b85),
        ("IOMMU_IOAS_UNMAP", 0x3b86),
    ];
    let ending = in_filtered_child(ThreadKind::Vcpu, SeccompMode::On, &|| {
        for (_, request) in HOST_MAPPING_IOCTLS {
            // SAFETY: on fd -1 the call fails before touching memory.
            unsafe { libc::ioctl(-1, request, 0) };
        }
    });
    assert_eq!(ending, Ending::Exited(0));
    for kind in [
        ThreadKind::Vmm,
        ThreadKind::DeviceWorker,
        ThreadKind::FaultRelay,
        ThreadKind::HostOutput,
    ] {
        for (name, request) in HOST_MAPPING_IOCTLS {
            let ending = in_filtered_child(kind, SeccompMode::On, &|| {
                // SAFETY: as above.
                unsafe { libc::ioctl(-1, request, 0) };
            });
            assert_eq!(
                ending,
                Ending::Signalled(libc::SIGSYS),
                "{} on {name}",
                kind.name()
            );
        }
    }
}

#[test]
fn log_mode_lets_a_forbidden_syscall_through() {
    for kind in ThreadKind::ALL {
        for (what, syscall) in forbidden_syscalls()
            .into_iter()
            .filter(|(what, _)| *what != "execve")
        {
            assert_eq!(
                in_filtered_child(kind, SeccompMode::Log, &*syscall),
                Ending::Exited(0),
                "{} filter in log mode on {what}",
                kind.name()
            );
        }
    }
    let _ = std::fs::remove_file(new_file_path());
}

#[test]
fn off_mode_installs_nothing() {
    for kind in ThreadKind::ALL {
        assert!(vmm::seccomp::filter_for(kind, SeccompMode::Off).is_none());
    }
}

#[test]
fn every_seccomp_mode_runs_every_device() {
    if !kvm_available("every_seccomp_mode_runs_every_device") {
        return;
    }
    let dir = TempDir::new("seccomp-modes");
    let disk = dir.file("disk.img", &[0u8; 64 << 10]);
    let plain_disk = format!("path={}", disk.display());
    let translated_disk = format!("{plain_disk},iommu=on");
    let scenarios: [&[&str]; 2] = [
        &[
            "--cpus",
            "2",
            "--disk",
            &plain_disk,
            "--rng",
            "--console",
            "--cmdline",
            "probe=boot,pci,virtio-blk,virtio-rng",
        ],
        &[
            "--disk",
            &translated_disk,
            "--rng",
            "iommu=on",
            "--cmdline",
            "probe=viommu blk_sector=3",
        ],
    ];
    for mode in ["on", "log", "off"] {
        for args in scenarios {
            let output = run(&[args, &["--seccomp", mode]].concat());
            assert_status(&output, 0);
            assert!(
                stdout(&output).contains("PROBE done") && stdout(&output).contains("failed=0"),
                "--seccomp {mode} {args:?}: {}",
                stdout(&output)
            );
        }
    }
}

#[test]
fn unknown_seccomp_mode_is_a_usage_error() {
    assert_usage_error(&run(&["--seccomp", "bogus"]), "--seccomp");
}
