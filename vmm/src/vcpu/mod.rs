//! vCPU threads: run KVM_RUN, dispatch port and MMIO exits to the buses.
//!
//! A vCPU thread starts before its vCPU exists ([`spawn_vcpu`]): it installs its seccomp
//! filter while the VM is being built, then waits for its vCPU ([`VcpuThread::start`]), so
//! neither the thread's creation nor its filter stands between the built VM and KVM_RUN.
//! The boot vCPU's thread may start even earlier, before the command line is parsed, with
//! work of its own that needs no VM ([`spawn_unassigned_vcpu`]); it gets its filter once
//! assigned to the VM, before its vCPU.

mod crash_report;
mod exit_counters;
mod flight_recorder;
mod kick;
mod pause;

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use devices::{Bus, VmControl, VmExitReason};
use kvm_ioctls::{VcpuExit, VcpuFd};

pub use crash_report::{CrashReports, VcpuReport};
pub use exit_counters::ExitCounters;
pub use flight_recorder::RECORDED_EXITS;
use flight_recorder::{ExitKind, ExitRecord, FlightRecorder};
pub(crate) use kick::kick_signal;
pub use kick::{install_kick_handler, kick_until_finished};
pub use pause::PauseGate;

use crate::seccomp::{self, SeccompMode, ThreadKind};
use crate::vm::GuestVm;

/// What a vCPU thread needs besides its fd.
pub struct VcpuContext {
    /// Keeps guest RAM mapped while this vCPU's fd, which keeps the VM alive, exists.
    pub _vm: Arc<GuestVm>,
    pub index: u8,
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub control: VmControl,
    pub times: Arc<VcpuTimes>,
    /// Filled only when the guest has failed.
    pub crash_reports: Arc<CrashReports>,
    /// Closed while the VM is paused.
    pub pause: Arc<PauseGate>,
    pub exit_counters: Arc<ExitCounters>,
}

/// When the vCPUs entered and left the guest, relative to nestor's start (`--boot-timer`).
#[derive(Default)]
pub struct VcpuTimes {
    first_run: Mutex<Option<Duration>>,
    left_guest: Mutex<Vec<(u8, Duration)>>,
}

impl VcpuTimes {
    /// When the boot vCPU first called KVM_RUN.
    pub fn first_run(&self) -> Option<Duration> {
        *self.first_run.lock().unwrap()
    }

    /// When each vCPU saw the VM end and stopped running the guest.
    pub fn left_guest(&self) -> Vec<(u8, Duration)> {
        self.left_guest.lock().unwrap().clone()
    }
}

/// Says the thread is done, however it ends.
struct Finished(Sender<usize>, usize);

impl Drop for Finished {
    fn drop(&mut self) {
        let _ = self.0.send(self.1);
    }
}

/// A vCPU thread waiting for its vCPU. Dropped unstarted, the thread ends.
pub struct VcpuThread {
    handoff: Sender<(VcpuFd, VcpuContext)>,
    handle: JoinHandle<()>,
}

impl VcpuThread {
    /// Hands the thread its vCPU: it enters the guest at once.
    pub fn start(self, fd: VcpuFd, ctx: VcpuContext) -> JoinHandle<()> {
        // A thread that is gone (its filter failed) has asked the VM to end; the fd and
        // the context come back in the error and are dropped here.
        let _ = self.handoff.send((fd, ctx));
        self.handle
    }
}

/// Starts the thread of vCPU `index`. Once it is done with the VM (or was never started),
/// it sends `index` on `finished` (see [`kick_until_finished`]).
pub fn spawn_vcpu(
    index: u8,
    mode: SeccompMode,
    control: VmControl,
    finished: Sender<usize>,
) -> std::io::Result<VcpuThread> {
    Ok(spawn_unassigned_vcpu(index, || ())?.assign(mode, control, finished))
}

/// What a vCPU thread started early learns once the VM's configuration is known.
struct Assignment {
    mode: SeccompMode,
    control: VmControl,
    finished: Sender<usize>,
}

/// A vCPU thread started before the VM's configuration is known. It runs unfiltered until
/// it is assigned, and gets its own filter then, before its vCPU. Dropped unassigned, it ends.
pub struct UnassignedVcpuThread {
    index: u8,
    assignment: Sender<Assignment>,
    thread: VcpuThread,
}

impl UnassignedVcpuThread {
    /// Tells the thread its seccomp mode, its VM's control and where to say it is done; it
    /// installs its filter at once. See [`spawn_vcpu`].
    pub fn assign(
        self,
        mode: SeccompMode,
        control: VmControl,
        finished: Sender<usize>,
    ) -> VcpuThread {
        let assignment = Assignment {
            mode,
            control,
            finished,
        };
        if let Err(gone) = self.assignment.send(assignment) {
            // The thread ended before (its first job panicked): say so for it.
            drop(Finished(gone.0.finished, usize::from(self.index)));
        }
        self.thread
    }
}

/// Starts the thread of vCPU `index`, which runs `first` (work that needs no VM), then waits
/// to be assigned ([`UnassignedVcpuThread::assign`]) and for its vCPU.
pub fn spawn_unassigned_vcpu(
    index: u8,
    first: impl FnOnce() + Send + 'static,
) -> std::io::Result<UnassignedVcpuThread> {
    let (assignment, assignments) = channel::<Assignment>();
    let (handoff, handoffs) = channel();
    let handle = std::thread::Builder::new()
        .name(format!("vcpu{index}"))
        .spawn(move || {
            first();
            let Ok(Assignment {
                mode,
                control,
                finished,
            }) = assignments.recv()
            else {
                return;
            };
            let finished = Finished(finished, usize::from(index));
            if let Err(e) = seccomp::install(ThreadKind::Vcpu, mode) {
                control.request_exit(VmExitReason::VmmFailure(format!("vcpu{index}: {e}")));
                return;
            }
            if let Ok((fd, ctx)) = handoffs.recv() {
                // Consumes the fd, so it closes before `ctx` lets go of the VM.
                run_loop(fd, &ctx);
            }
            // Only now: the fd and the context's hold on the VM are gone.
            drop(finished);
        })?;
    Ok(UnassignedVcpuThread {
        index,
        assignment,
        thread: VcpuThread { handoff, handle },
    })
}

fn run_loop(mut fd: VcpuFd, ctx: &VcpuContext) {
    if ctx.index == 0 {
        *ctx.times.first_run.lock().unwrap() = Some(ctx.control.started().elapsed());
    }
    let mut recorder = FlightRecorder::default();
    run_until_stopped(&mut fd, ctx, &mut recorder);
    let left = ctx.control.started().elapsed();
    ctx.times.left_guest.lock().unwrap().push((ctx.index, left));
    if matches!(
        ctx.control.exit_reason(),
        Some(VmExitReason::GuestFailure(_))
    ) {
        let report = VcpuReport::capture(&fd, ctx.index, left, &recorder);
        ctx.crash_reports.add(report);
    }
}

fn run_until_stopped(fd: &mut VcpuFd, ctx: &VcpuContext, recorder: &mut FlightRecorder) {
    while !ctx.control.is_stopping() {
        ctx.pause.pass(&ctx.control);
        if ctx.control.is_stopping() {
            break;
        }
        let result = fd.run();
        let at = ctx.control.started().elapsed();
        match result {
            Ok(mut exit) => {
                let failure = handle_exit(&mut exit, ctx);
                // After the bus has filled a read's data.
                let record = ExitRecord::of(&exit, at);
                ctx.exit_counters.count(ctx.index.into(), record.kind);
                recorder.record(record);
                if let Some(reason) = failure {
                    ctx.control.request_exit(describe_failure(fd, reason));
                }
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                ctx.exit_counters.count(ctx.index.into(), ExitKind::Intr);
                recorder.record(ExitRecord::event(at, ExitKind::Intr, 0));
            }
            Err(e) => {
                ctx.control.request_exit(VmExitReason::VmmFailure(format!(
                    "KVM_RUN failed on vcpu{}: {e}",
                    ctx.index
                )));
            }
        }
    }
}

/// Adds where the guest was to a failure, since that is what a guest developer needs first.
fn describe_failure(fd: &mut VcpuFd, reason: VmExitReason) -> VmExitReason {
    let VmExitReason::GuestFailure(why) = reason else {
        return reason;
    };
    let run = fd.get_kvm_run();
    let detail = if run.exit_reason == kvm_bindings::KVM_EXIT_INTERNAL_ERROR {
        // SAFETY: `internal` is the active union member for KVM_EXIT_INTERNAL_ERROR.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        // The data words are KVM's own account of the failure (for a failed event
        // delivery: the exit reason, its qualifications and the faulting address).
        let ndata = (internal.ndata as usize).min(internal.data.len());
        let words: Vec<String> = internal.data[..ndata]
            .iter()
            .map(|w| format!("{w:#x}"))
            .collect();
        if words.is_empty() {
            format!(", suberror {}", internal.suberror)
        } else {
            format!(
                ", suberror {} data [{}]",
                internal.suberror,
                words.join(" ")
            )
        }
    } else {
        String::new()
    };
    match fd.get_regs() {
        Ok(regs) => VmExitReason::GuestFailure(format!("{why} at rip {:#x}{detail}", regs.rip)),
        Err(_) => VmExitReason::GuestFailure(format!("{why}{detail}")),
    }
}

/// Handles one exit; returns why the VM must end, if it must.
fn handle_exit(exit: &mut VcpuExit<'_>, ctx: &VcpuContext) -> Option<VmExitReason> {
    let cpu = ctx.index;
    match exit {
        VcpuExit::IoIn(port, data) => {
            if !ctx.pio.read(u64::from(*port), data) {
                data.fill(0xff);
            }
            None
        }
        VcpuExit::IoOut(port, data) => {
            ctx.pio.write(u64::from(*port), data);
            None
        }
        VcpuExit::MmioRead(addr, data) => {
            if !ctx.mmio.read(*addr, data) {
                data.fill(0xff);
            }
            None
        }
        VcpuExit::MmioWrite(addr, data) => {
            ctx.mmio.write(*addr, data);
            None
        }
        VcpuExit::Shutdown => Some(VmExitReason::GuestFailure(format!(
            "vcpu{cpu} triple-faulted (the guest crashed before it could report an error)"
        ))),
        VcpuExit::Hlt => Some(VmExitReason::GuestFailure(format!(
            "vcpu{cpu} halted with nothing to wake it"
        ))),
        VcpuExit::SystemEvent(kind, _) => Some(match *kind {
            kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => VmExitReason::PowerOff,
            kvm_bindings::KVM_SYSTEM_EVENT_RESET => VmExitReason::Reset,
            other => VmExitReason::GuestFailure(format!("vcpu{cpu}: system event {other}")),
        }),
        VcpuExit::FailEntry(reason, _) => Some(VmExitReason::GuestFailure(format!(
            "vcpu{cpu} could not enter the guest (hardware reason {reason:#x})"
        ))),
        VcpuExit::InternalError => Some(VmExitReason::GuestFailure(format!(
            "KVM internal error on vcpu{cpu} (the guest ran something KVM cannot emulate)"
        ))),
        VcpuExit::Intr => None,
        other => Some(VmExitReason::VmmFailure(format!(
            "vcpu{cpu}: unexpected exit {other:?}"
        ))),
    }
}
