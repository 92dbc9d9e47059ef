//! What a vCPU leaves behind when the guest has failed: its registers and its last exits.
//!
//! Each vCPU thread reads its own registers with its own fd once it has left the guest: a
//! vCPU ioctl from another thread would wait for KVM_RUN to return. On AMD, KVM may reset a
//! vCPU that shut down (its VMCB is undefined after the shutdown intercept), so the crashed
//! vCPU's registers can show the reset state; the other vCPUs' registers and every vCPU's
//! exits still tell where the guest was.

use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use kvm_bindings::{kvm_regs, kvm_sregs};
use kvm_ioctls::VcpuFd;

use super::flight_recorder::{ExitRecord, FlightRecorder};

/// One vCPU's state when it left the guest.
#[derive(Debug, Clone)]
pub struct VcpuReport {
    pub index: u8,
    /// Since nestor started.
    pub left_guest: Duration,
    pub regs: Option<kvm_regs>,
    pub sregs: Option<kvm_sregs>,
    pub mp_state: Option<u32>,
    /// Oldest first.
    pub exits: Vec<ExitRecord>,
    /// Exits in all, including those no longer recorded.
    pub total_exits: u64,
}

impl VcpuReport {
    /// Reads the registers of the calling thread's own vCPU.
    pub fn capture(
        fd: &VcpuFd,
        index: u8,
        left_guest: Duration,
        recorder: &FlightRecorder,
    ) -> Self {
        Self {
            index,
            left_guest,
            regs: fd.get_regs().ok(),
            sregs: fd.get_sregs().ok(),
            mp_state: fd.get_mp_state().ok().map(|s| s.mp_state),
            exits: recorder.oldest_first(),
            total_exits: recorder.total(),
        }
    }

    /// The registers a guest developer looks at first, on one line, then the general
    /// purpose registers that are not zero.
    pub fn state_lines(&self) -> Vec<String> {
        let cpu = self.index;
        let mut state = format!("nestor: vcpu{cpu} state:");
        match &self.regs {
            Some(r) => {
                let _ = write!(
                    state,
                    " rip={:#x} rsp={:#x} rflags={:#x}",
                    r.rip, r.rsp, r.rflags
                );
            }
            None => state.push_str(" registers unreadable"),
        }
        if let Some(s) = &self.sregs {
            let _ = write!(
                state,
                " cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x} cs={:#x} ss={:#x} \
                 gdt={:#x}/{:#x} idt={:#x}/{:#x}",
                s.cr0,
                s.cr2,
                s.cr3,
                s.cr4,
                s.efer,
                s.cs.selector,
                s.ss.selector,
                s.gdt.base,
                s.gdt.limit,
                s.idt.base,
                s.idt.limit
            );
        }
        let mp_state = self.mp_state.map_or("unknown", mp_state_name);
        let _ = write!(state, " mp_state={mp_state}");
        let mut lines = vec![state];
        if let Some(r) = &self.regs {
            lines.push(format!("nestor: vcpu{cpu} regs: {}", general_registers(r)));
        }
        lines
    }

    /// The last `shown` exits, oldest first, timed relative to `end` (since nestor started).
    pub fn exit_lines(&self, end: Duration, shown: usize) -> Vec<String> {
        let cpu = self.index;
        let skipped = self.exits.len().saturating_sub(shown);
        let mut lines = vec![format!(
            "nestor: vcpu{cpu} exits: last {} of {}, oldest first",
            self.exits.len() - skipped,
            self.total_exits
        )];
        lines.extend(
            self.exits[skipped..]
                .iter()
                .map(|exit| format!("nestor: vcpu{cpu} exit {}", describe_exit(exit, end))),
        );
        lines
    }
}

/// Where the vCPU threads leave their reports for the main thread.
#[derive(Default)]
pub struct CrashReports(Mutex<Vec<VcpuReport>>);

impl CrashReports {
    pub fn add(&self, report: VcpuReport) {
        self.0.lock().unwrap().push(report);
    }

    /// Every report, by vCPU index.
    pub fn take(&self) -> Vec<VcpuReport> {
        let mut reports = std::mem::take(&mut *self.0.lock().unwrap());
        reports.sort_by_key(|r| r.index);
        reports
    }
}

fn mp_state_name(state: u32) -> &'static str {
    match state {
        kvm_bindings::KVM_MP_STATE_RUNNABLE => "runnable",
        kvm_bindings::KVM_MP_STATE_UNINITIALIZED => "uninitialized",
        kvm_bindings::KVM_MP_STATE_INIT_RECEIVED => "init-received",
        kvm_bindings::KVM_MP_STATE_HALTED => "halted",
        kvm_bindings::KVM_MP_STATE_SIPI_RECEIVED => "sipi-received",
        kvm_bindings::KVM_MP_STATE_STOPPED => "stopped",
        kvm_bindings::KVM_MP_STATE_CHECK_STOP => "check-stop",
        kvm_bindings::KVM_MP_STATE_OPERATING => "operating",
        kvm_bindings::KVM_MP_STATE_LOAD => "load",
        kvm_bindings::KVM_MP_STATE_AP_RESET_HOLD => "ap-reset-hold",
        kvm_bindings::KVM_MP_STATE_SUSPENDED => "suspended",
        _ => "unknown",
    }
}

/// rax..r15 that are not zero; most are, in a crashed guest that has just started.
fn general_registers(r: &kvm_regs) -> String {
    let all = [
        ("rax", r.rax),
        ("rbx", r.rbx),
        ("rcx", r.rcx),
        ("rdx", r.rdx),
        ("rsi", r.rsi),
        ("rdi", r.rdi),
        ("rbp", r.rbp),
        ("r8", r.r8),
        ("r9", r.r9),
        ("r10", r.r10),
        ("r11", r.r11),
        ("r12", r.r12),
        ("r13", r.r13),
        ("r14", r.r14),
        ("r15", r.r15),
    ];
    let set: Vec<String> = all
        .iter()
        .filter(|(_, value)| *value != 0)
        .map(|(name, value)| format!("{name}={value:#x}"))
        .collect();
    match set.len() {
        0 => "rax..r15 all 0".to_string(),
        n if n == all.len() => set.join(" "),
        _ => format!("{} (others 0)", set.join(" ")),
    }
}

/// `-0.812ms io-out port=0x3f8 size=1 data=[0x41]`.
fn describe_exit(exit: &ExitRecord, end: Duration) -> String {
    let mut text = relative_time(exit.at, end);
    text.push(' ');
    text.push_str(exit.kind.name());
    if exit.kind.is_access() {
        let place = if exit.kind.is_port_access() {
            "port"
        } else {
            "addr"
        };
        let _ = write!(
            text,
            " {place}={:#x} size={} data=[",
            exit.address, exit.size
        );
        let bytes: Vec<String> = exit
            .kept_data()
            .iter()
            .map(|b| format!("{b:#04x}"))
            .collect();
        text.push_str(&bytes.join(" "));
        if exit.kept_data().len() < exit.size as usize {
            text.push_str(" ...");
        }
        text.push(']');
    } else if exit.address != 0 {
        let _ = write!(text, " code={:#x}", exit.address);
    }
    text
}

/// Milliseconds before (or, for a vCPU that left after the reference, after) `end`.
fn relative_time(at: Duration, end: Duration) -> String {
    if at <= end {
        format!("-{:.3}ms", (end - at).as_secs_f64() * 1e3)
    } else {
        format!("+{:.3}ms", (at - end).as_secs_f64() * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcpu::flight_recorder::ExitKind;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    fn report() -> VcpuReport {
        let mut sregs = kvm_sregs {
            cr0: 0x8000_0011,
            cr3: 0x1000,
            cr4: 0x20,
            efer: 0x500,
            ..Default::default()
        };
        sregs.cs.selector = 0x8;
        sregs.ss.selector = 0x10;
        sregs.idt.limit = 0;
        sregs.gdt.base = 0x500;
        sregs.gdt.limit = 0x17;
        VcpuReport {
            index: 1,
            left_guest: ms(100),
            regs: Some(kvm_regs {
                rip: 0x10_0123,
                rsp: 0x8000,
                rflags: 0x46,
                rdx: 0x3f8,
                ..Default::default()
            }),
            sregs: Some(sregs),
            mp_state: Some(kvm_bindings::KVM_MP_STATE_HALTED),
            exits: vec![
                ExitRecord::access(ms(98), ExitKind::IoOut, 0x3f8, b"A"),
                ExitRecord::access(ms(99), ExitKind::MmioRead, 0xfee0_0030, &[0x14, 0, 5, 0]),
                ExitRecord::event(ms(100), ExitKind::Shutdown, 0),
            ],
            total_exits: 1234,
        }
    }

    #[test]
    fn state_lines_name_the_registers() {
        assert_eq!(
            report().state_lines(),
            [
                "nestor: vcpu1 state: rip=0x100123 rsp=0x8000 rflags=0x46 cr0=0x80000011 \
                 cr2=0x0 cr3=0x1000 cr4=0x20 efer=0x500 cs=0x8 ss=0x10 gdt=0x500/0x17 \
                 idt=0x0/0x0 mp_state=halted",
                "nestor: vcpu1 regs: rdx=0x3f8 (others 0)",
            ]
        );
    }

    #[test]
    fn unreadable_registers_are_said_so() {
        let mut report = report();
        report.regs = None;
        report.sregs = None;
        report.mp_state = None;
        assert_eq!(
            report.state_lines(),
            ["nestor: vcpu1 state: registers unreadable mp_state=unknown"]
        );
    }

    #[test]
    fn exit_lines_are_timed_from_the_end_and_bounded() {
        assert_eq!(
            report().exit_lines(ms(100), 2),
            [
                "nestor: vcpu1 exits: last 2 of 1234, oldest first",
                "nestor: vcpu1 exit -1.000ms mmio-read addr=0xfee00030 size=4 \
                 data=[0x14 0x00 0x05 0x00]",
                "nestor: vcpu1 exit -0.000ms shutdown",
            ]
        );
        let all = report().exit_lines(ms(99), 32);
        assert_eq!(all.len(), 4);
        assert_eq!(
            all[1],
            "nestor: vcpu1 exit -1.000ms io-out port=0x3f8 size=1 data=[0x41]"
        );
        assert_eq!(all[3], "nestor: vcpu1 exit +1.000ms shutdown");
    }

    #[test]
    fn long_string_io_is_marked_as_cut() {
        let exit = ExitRecord::access(ms(1), ExitKind::IoOut, 0x3f8, &[0x41; 12]);
        assert_eq!(
            describe_exit(&exit, ms(1)),
            "-0.000ms io-out port=0x3f8 size=12 \
             data=[0x41 0x41 0x41 0x41 0x41 0x41 0x41 0x41 ...]"
        );
        let event = ExitRecord::event(ms(1), ExitKind::SystemEvent, 3);
        assert_eq!(
            describe_exit(&event, ms(1)),
            "-0.000ms system-event code=0x3"
        );
    }

    #[test]
    fn reports_come_back_by_vcpu_index() {
        let reports = CrashReports::default();
        for index in [2, 0, 1] {
            reports.add(VcpuReport { index, ..report() });
        }
        let order: Vec<u8> = reports.take().iter().map(|r| r.index).collect();
        assert_eq!(order, [0, 1, 2]);
        assert!(reports.take().is_empty());
    }
}
