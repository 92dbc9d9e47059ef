//! Building a VM from a [`VmConfig`] and running it to its end.

mod device_memory;
mod error;
mod failure_report;
mod guest_vm;
mod head_start;
mod kernel;
mod legacy;
mod nested_passthrough;
mod output;
mod passthrough;
mod pci;
mod trace;

use std::os::unix::thread::JoinHandleExt;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use arch::acpi::{create_acpi_tables, AcpiConfig, GedDescription};
use devices::{Bus, PendingThread, VmControl, VmExitReason};
use kvm_bindings::{kvm_pit_config, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Cap, Kvm, VmFd};

use error::kvm_err;
pub use error::VmmError;
pub use guest_vm::GuestVm;
pub use head_start::HeadStart;

use crate::api::{ApiListener, ApiThread, ApiVm};
use crate::config::VmConfig;
use crate::event_loop::{EventLoop, KickRequest, VcpuKicker};
use crate::seccomp::{self, ThreadKind};
use crate::vcpu::{self, CrashReports, ExitCounters, PauseGate, VcpuContext, VcpuTimes};
use output::GuestOutputs;
pub use trace::Start;
use trace::Trace;

/// Below the 4 GiB boundary, out of RAM and the MMIO hole's devices; Intel VMX needs it.
const TSS_ADDRESS: usize = arch::layout::KVM_TSS_START as usize;
/// How long the VM's end waits for the vCPU threads to stop.
const VCPU_STOP_TIME: Duration = Duration::from_secs(1);
/// How long a VM's end gives pending guest output to reach the host.
const OUTPUT_DRAIN_TIME: Duration = Duration::from_secs(2);
/// How long a VM's end waits for the API thread to close its socket.
const API_STOP_TIME: Duration = Duration::from_secs(1);

fn check_kvm(kvm: &Kvm) -> Result<(), VmmError> {
    for (cap, name) in [
        (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
        (Cap::Irqfd, "KVM_CAP_IRQFD"),
        (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
        (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    ] {
        if !kvm.check_extension(cap) {
            return Err(VmmError::KvmCapability(name));
        }
    }
    Ok(())
}

/// Gives a new VM its RAM and in-kernel devices, in the order that costs the kernel least.
///
/// Guest RAM is registered first: KVM commits each memory slot change with an SRCU grace
/// period, which is cheap on a fresh VM and costs milliseconds once the interrupt controller
/// is there (see `docs/startup.md`). The PIT only when asked for.
fn build_vm(fd: VmFd, config: &VmConfig, trace: &mut Trace) -> Result<GuestVm, VmmError> {
    let vm = GuestVm::new(fd, config.memory)?;
    trace.step("memory");
    vm.set_tss_address(TSS_ADDRESS)
        .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip()
        .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
    trace.step("irqchip");
    if config.pit {
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;
        trace.step("pit");
    }
    Ok(vm)
}

/// Boots the guest described by `config` and returns nestor's exit status. `start` is when
/// nestor started, on the calling thread: `--boot-timer` counts from it. `head_start` is
/// what was started before the configuration was known.
pub fn run_vm(config: VmConfig, start: Start, head_start: HeadStart) -> Result<u8, VmmError> {
    let mut trace = Trace::new(start, config.boot_timer);
    if let Some(made) = head_start.made {
        trace.step_ended("vm", made);
    }
    trace.step("config");
    // Before any thread that makes files exists (the boot vCPU's, started ahead, makes
    // none): binding sets the process umask for a moment.
    let api_listener = config
        .api_socket
        .as_deref()
        .map(ApiListener::bind)
        .transpose()?;
    let control = VmControl::new(start.at).map_err(|e| VmmError::Device(e.to_string()))?;
    let (kvm, made_vm) = match head_start.vm {
        Some((kvm, fd)) => (kvm, Some(fd)),
        None => (Kvm::new().map_err(VmmError::KvmOpen)?, None),
    };
    check_kvm(&kvm)?;
    let max_vcpus = kvm.get_max_vcpus();
    if usize::from(config.cpus) > max_vcpus {
        return Err(VmmError::Config(crate::config::ConfigError::Cpus {
            got: config.cpus.into(),
            max: max_vcpus as u32,
        }));
    }
    trace.step("kvm");
    // Made ahead, the VM's step is already in the trace, before `config`.
    let fd = match made_vm {
        Some(fd) => fd,
        None => {
            let fd = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
            trace.step("vm");
            fd
        }
    };
    let mut boot_vcpu_thread = head_start.boot_vcpu_thread;
    // The vCPU threads start (the boot vCPU's may have started ahead) and install their
    // filters while the kernel builds the VM, which is mostly waiting.
    vcpu::install_kick_handler().map_err(|e| VmmError::Thread(e.into()))?;
    let (finished, vcpus_done) = mpsc::channel();
    let vcpu_threads = (0..config.cpus)
        .map(|index| match boot_vcpu_thread.take() {
            Some(thread) => Ok(thread.assign(config.seccomp, control.clone(), finished.clone())),
            None => vcpu::spawn_vcpu(index, config.seccomp, control.clone(), finished.clone()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(VmmError::Thread)?;
    drop(finished);
    trace.step("vcpu-threads");
    let vm = Arc::new(build_vm(fd, &config, &mut trace)?);
    let mem = vm.memory().clone();
    let pio = Arc::new(Bus::new());
    let mmio = Arc::new(Bus::new());
    let output_setup =
        seccomp::filtered_thread_setup(ThreadKind::HostOutput, config.seccomp, control.clone());
    let mut outputs = GuestOutputs::open(&config, &output_setup)?;
    trace.step("outputs");
    let legacy = legacy::add_legacy_devices(&vm, &pio, &mmio, &control, outputs.serial())?;
    trace.step("legacy-devices");
    let mut pci = pci::add_pci_devices(&vm, &mem, &pio, &mmio, &config, &control, &outputs)?;
    trace.step("pci-devices");

    let acpi = AcpiConfig {
        cpus: config.cpus,
        pci: Some(pci.description.clone()),
        ged: Some(GedDescription {
            register: arch::layout::GED_START,
            gsi: devices::legacy::ports::GED_GSI,
        }),
        extra_tables: pci.acpi_tables.clone(),
    };
    let rsdp = create_acpi_tables(&mem, &acpi)?;
    trace.step("acpi");
    let entry = kernel::load_kernel(&mem, &config, rsdp)?;
    trace.step("kernel");

    // Fetched ahead if it could be; its errors are reported here, as they always were.
    let cpuid = head_start.cpuid.get(&kvm)?;
    let mut vcpu_fds = Vec::with_capacity(config.cpus.into());
    for index in 0..config.cpus {
        let fd = vm
            .create_vcpu(u64::from(index))
            .map_err(kvm_err("KVM_CREATE_VCPU"))?;
        arch::cpu::setup_cpuid(&fd, &cpuid, index, config.cpus, config.nested)?;
        arch::cpu::setup_msrs(&fd)?;
        arch::cpu::setup_lapic(&fd)?;
        if index == 0 {
            arch::cpu::setup_boot_cpu(&fd, &mem, &entry)?;
        }
        vcpu_fds.push(fd);
    }
    trace.step("vcpus");

    let times = Arc::new(VcpuTimes::default());
    let crash_reports = Arc::new(CrashReports::default());
    let pause = Arc::new(PauseGate::default());
    let exit_counters = Arc::new(ExitCounters::new(config.cpus.into()));
    let mut threads = Vec::with_capacity(vcpu_fds.len());
    for ((index, fd), thread) in vcpu_fds.into_iter().enumerate().zip(vcpu_threads) {
        let ctx = VcpuContext {
            _vm: vm.clone(),
            index: index as u8,
            pio: pio.clone(),
            mmio: mmio.clone(),
            control: control.clone(),
            times: times.clone(),
            crash_reports: crash_reports.clone(),
            pause: pause.clone(),
            exit_counters: exit_counters.clone(),
        };
        threads.push(thread.start(fd, ctx));
    }
    trace.step("vcpus-started");
    // Only now, and before this thread's filter exists: the guest's first instruction
    // need not wait for them, since what is given to them before waits for them.
    let mut pending = std::mem::take(&mut outputs.threads)
        .into_iter()
        .chain(std::mem::take(&mut pci.workers));
    if let Err(e) = pending.try_for_each(PendingThread::launch) {
        let why = format!("cannot start a device or output thread: {e}");
        control.request_exit(VmExitReason::VmmFailure(why));
    }
    trace.step("threads");

    let mut event_loop = EventLoop::new(control.clone())?;
    let kick = KickRequest::new().map_err(VmmError::Thread)?;
    let pthreads = threads.iter().map(JoinHandleExt::as_pthread_t).collect();
    event_loop.add_vcpu_kicker(VcpuKicker::new(kick.clone(), pthreads));
    let api = match api_listener {
        Some(listener) => {
            let vm = ApiVm {
                control: control.clone(),
                pause,
                kick,
                vcpus: config.cpus.into(),
                config: serde_json::from_str(&crate::config_file::to_json(&config.args))
                    .unwrap_or_default(),
                exit_counters,
                iommu: pci.iommu_counters.clone(),
                devices: pci.device_counters.clone(),
                power_button: legacy.power_button.clone(),
            };
            let thread =
                ApiThread::start(listener, vm, config.seccomp).map_err(VmmError::Thread)?;
            trace.step("api");
            Some(thread)
        }
        None => None,
    };
    if config.serial == crate::config::SerialMode::Stdio && !pci.console_owns_stdin {
        event_loop.add_serial_input(legacy.serial.clone());
    }
    let loop_result = seccomp::install(ThreadKind::Vmm, config.seccomp)
        .map_err(|e| VmmError::Seccomp(e.to_string()))
        .and_then(|_| event_loop.run(config.timeout));
    trace.step("event-loop-woken");
    if let Err(e) = &loop_result {
        control.request_exit(VmExitReason::VmmFailure(e.to_string()));
    }
    let stuck = vcpu::kick_until_finished(threads, &vcpus_done, Instant::now() + VCPU_STOP_TIME);
    trace.step("vcpus-joined");
    for name in &stuck {
        log::warn!("{name} did not stop within {VCPU_STOP_TIME:?}; nestor exits without it");
    }
    drop(event_loop);
    let verbose = crate::logging::verbose();
    // Copied now: the devices are forgotten below, and only -v asks for it.
    let interrupt_tables =
        verbose.then(|| failure_report::InterruptTables::gather(&pci.interrupts, &pci.msix_tables));
    if stuck.is_empty() {
        // No vCPU runs and none will: close the VM now, so its end is a step of its own.
        // The devices stay (their workers are not joined: one may be stuck in a long host
        // operation, and the process exit ends them all); the RAM stays mapped for them.
        pci.interrupts.release_vm();
        drop(vm);
        trace.step("vm-closed");
    }
    outputs.finish(Instant::now() + OUTPUT_DRAIN_TIME);
    trace.step("output-drained");
    if let Some(api) = api {
        api.finish(API_STOP_TIME);
        trace.step("api-closed");
    }
    std::mem::forget(pci);

    trace.step("exit");
    if config.boot_timer {
        let marks = legacy.boot_marks.lock().unwrap();
        for line in trace::lines(&trace, times.first_run(), &marks, &times.left_guest()) {
            crate::logging::stderr_line(format_args!("{line}"));
        }
    }
    let reason = control.exit_reason().unwrap_or(VmExitReason::VmmFailure(
        "the VM ended without a reason".into(),
    ));
    loop_result?;
    let status = report_exit(&reason);
    if matches!(reason, VmExitReason::GuestFailure(_)) {
        let vcpus = crash_reports.take();
        for line in failure_report::lines(&vcpus, verbose, interrupt_tables.as_ref()) {
            crate::logging::stderr_line(format_args!("{line}"));
        }
    }
    Ok(status)
}

/// Says why the VM ended when it was not a clean exit, and returns the exit status.
fn report_exit(reason: &VmExitReason) -> u8 {
    match reason {
        VmExitReason::GuestFailure(why) => {
            crate::logging::stderr_line(format_args!("nestor: guest failed: {why}"))
        }
        VmExitReason::VmmFailure(why) => {
            crate::logging::stderr_line(format_args!("nestor: error: {why}"))
        }
        _ => log::info!("VM ended: {reason:?}"),
    }
    reason.exit_status() as u8
}
