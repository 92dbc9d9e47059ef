//! nestor-floor: the least work that runs nestor's trivial guest on KVM, the floor that
//! `benches/startup.sh` measures nestor against.
//!
//! What it does, in nestor's order and with nestor's arguments (see `vmm/src/vm/mod.rs`):
//! open `/dev/kvm` and check the same capabilities; KVM_CREATE_VM; map guest RAM (anonymous,
//! `MAP_NORESERVE`, split around the 32-bit MMIO hole as nestor's layout does) and register
//! it; KVM_SET_TSS_ADDR; KVM_CREATE_IRQCHIP; KVM_CREATE_PIT2 only with `--pit` (nestor's
//! `--pit`); an irqfd for COM1 (GSI 4); KVM_GET_SUPPORTED_CPUID, KVM_CREATE_VCPU and
//! KVM_SET_CPUID2 for one vCPU; the PVH entry state (32-bit protected mode, flat segments,
//! paging off, `rip` at 1 MiB) through KVM_SET_SREGS and KVM_SET_REGS. Then it copies the
//! guest into RAM and runs it on the main thread: the guest writes code 0 to the
//! boot-timer port 0x440 (its first exit) and 0 to the exit port 0xf4, and the floor
//! returns from `main`, leaving every fd to the process exit, as nestor leaves what it
//! does not close itself.
//!
//! What it leaves out, as nestor's own share: argument parsing beyond `--memory` and
//! `--pit`, nestor's devices and their threads, ACPI tables and boot structures, kernel
//! loading (the guest is copied, not parsed), MSR and local APIC set-up, the FPU state,
//! seccomp filters, a vCPU thread (the vCPU runs on the main thread) and the event loop.
//!
//! Output on stderr, in nestor's `--boot-timer` format, in microseconds since `main`:
//! `floor: first KVM_RUN at N us faults=F` and `floor: boot-timer code=0 at N us`, F being
//! the minor page faults since `main` (nestor's `--boot-timer` counts them per step), after
//! `floor: boot-timer step=main at 0 us faults=F`, the faults before `main`.
//!
//! `nestor-floor --write-guest PATH` writes the same guest as a PVH ELF (an entry note and
//! one loadable segment at 1 MiB) for `nestor run --kernel PATH`.

use std::process::ExitCode;
use std::time::Instant;

use kvm_bindings::{
    kvm_pit_config, kvm_regs, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES,
    KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Cap, Kvm, VcpuExit};
use vmm_sys_util::eventfd::EventFd;

/// Where PVH kernels are loaded and the guest starts.
const ENTRY: u64 = 0x10_0000;
/// nestor's KVM TSS address, its 32-bit MMIO hole and where RAM resumes above it.
const TSS_ADDRESS: usize = 0xfffb_d000;
const MMIO_HOLE_START: u64 = 0xc000_0000;
const RAM_ABOVE_4G: u64 = 0x1_0000_0000;
const COM1_GSI: u32 = 4;
const BOOT_TIMER_PORT: u16 = 0x440;
const EXIT_PORT: u16 = 0xf4;

/// The guest, in 32-bit protected mode.
const GUEST: [u8; 10] = [
    0x31, 0xc0, // xor eax, eax
    0x66, 0xba, 0x40, 0x04, // mov dx, 0x440
    0xee, // out dx, al      boot-timer code 0
    0xe6, 0xf4, // out 0xf4, al    exit port, status 0
    0xf4, // hlt             not reached
];

fn main() -> ExitCode {
    let started = Instant::now();
    let faults_before_main = minor_faults();
    let mut memory_mib: u64 = 128;
    let mut pit = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--pit" => pit = true,
            "--memory" => match args.next().map(|v| v.parse()) {
                Some(Ok(mib)) if mib >= 2 => memory_mib = mib,
                _ => return usage("--memory wants a number of MiB, 2 or more"),
            },
            "--write-guest" => {
                let Some(path) = args.next() else {
                    return usage("--write-guest wants a path");
                };
                return match std::fs::write(&path, pvh_elf()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(&format!("cannot write {path}: {e}")),
                };
            }
            other => return usage(&format!("unexpected argument '{other}'")),
        }
    }
    match run(started, faults_before_main, memory_mib << 20, pit) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!(
        "nestor-floor: error: {why} (usage: nestor-floor [--memory MIB] [--pit] | --write-guest PATH)"
    );
    ExitCode::from(2)
}

fn fail(why: &str) -> ExitCode {
    eprintln!("nestor-floor: error: {why}");
    ExitCode::FAILURE
}

fn kvm(what: &str) -> impl FnOnce(kvm_ioctls::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn run(started: Instant, faults_before_main: u64, memory: u64, pit: bool) -> Result<(), String> {
    let kvm_fd = Kvm::new().map_err(kvm("/dev/kvm"))?;
    for cap in [Cap::Irqchip, Cap::Irqfd, Cap::Ioeventfd, Cap::UserMemory] {
        if !kvm_fd.check_extension(cap) {
            return Err(format!("KVM lacks {cap:?}"));
        }
    }
    let _ = kvm_fd.get_max_vcpus();
    let vm = kvm_fd.create_vm().map_err(kvm("KVM_CREATE_VM"))?;

    let below_hole = memory.min(MMIO_HOLE_START);
    let mut regions = vec![(0, below_hole)];
    if memory > MMIO_HOLE_START {
        regions.push((RAM_ABOVE_4G, memory - MMIO_HOLE_START));
    }
    let mut low_ram = std::ptr::null_mut::<u8>();
    for (slot, &(guest, size)) in regions.iter().enumerate() {
        // SAFETY: a fresh anonymous mapping; it is never unmapped, so it outlives the VM.
        let host = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if host == libc::MAP_FAILED {
            return Err(format!("cannot map {} MiB", size >> 20));
        }
        if slot == 0 {
            low_ram = host.cast();
        }
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: guest,
            memory_size: size,
            userspace_addr: host as u64,
        };
        // SAFETY: the region is mapped for `size` bytes and stays mapped (see above).
        unsafe { vm.set_user_memory_region(region) }.map_err(kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    vm.set_tss_address(TSS_ADDRESS)
        .map_err(kvm("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip().map_err(kvm("KVM_CREATE_IRQCHIP"))?;
    if pit {
        let config = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(config).map_err(kvm("KVM_CREATE_PIT2"))?;
    }
    let com1 = EventFd::new(0).map_err(|e| format!("eventfd: {e}"))?;
    vm.register_irqfd(&com1, COM1_GSI)
        .map_err(kvm("KVM_IRQFD"))?;

    // SAFETY: low RAM is at least 2 MiB long (checked in `main`), so the guest fits at 1 MiB.
    unsafe {
        std::ptr::copy_nonoverlapping(GUEST.as_ptr(), low_ram.add(ENTRY as usize), GUEST.len())
    };

    let cpuid = kvm_fd
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm("KVM_GET_SUPPORTED_CPUID"))?;
    let mut vcpu = vm.create_vcpu(0).map_err(kvm("KVM_CREATE_VCPU"))?;
    vcpu.set_cpuid2(&cpuid).map_err(kvm("KVM_SET_CPUID2"))?;
    let mut sregs = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    for (segment, selector, kind) in [
        (&mut sregs.cs, 0x08, 0xb),
        (&mut sregs.ds, 0x10, 0x3),
        (&mut sregs.es, 0x10, 0x3),
        (&mut sregs.fs, 0x10, 0x3),
        (&mut sregs.gs, 0x10, 0x3),
        (&mut sregs.ss, 0x10, 0x3),
    ] {
        segment.base = 0;
        segment.limit = 0xffff_ffff;
        segment.selector = selector;
        segment.type_ = kind;
        segment.present = 1;
        segment.s = 1;
        segment.db = 1;
        segment.g = 1;
    }
    // Protected mode, paging off, as PVH enters.
    sregs.cr0 = (sregs.cr0 & !0x8000_0000) | 0x11;
    sregs.cr4 = 0;
    sregs.efer = 0;
    vcpu.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;
    let regs = kvm_regs {
        rip: ENTRY,
        rflags: 0x2,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))?;

    let first_run = started.elapsed().as_micros();
    let faults = minor_faults() - faults_before_main;
    eprintln!("floor: boot-timer step=main at 0 us faults={faults_before_main}");
    eprintln!("floor: first KVM_RUN at {first_run} us faults={faults}");
    loop {
        match vcpu.run().map_err(kvm("KVM_RUN"))? {
            VcpuExit::IoOut(BOOT_TIMER_PORT, _) => eprintln!(
                "floor: boot-timer code=0 at {} us",
                started.elapsed().as_micros()
            ),
            VcpuExit::IoOut(EXIT_PORT, _) => return Ok(()),
            other => return Err(format!("unexpected exit {other:?}")),
        }
    }
}

/// The guest as a PVH ELF: the file header, a loadable segment holding the guest at
/// 1 MiB, and a note segment with the Xen PVH entry (type 18) pointing at it.
fn pvh_elf() -> Vec<u8> {
    const EHDR: u64 = 64;
    const PHDR: u64 = 56;
    let code_at = EHDR + 2 * PHDR;
    let note_at = (code_at + GUEST.len() as u64).next_multiple_of(4);
    let mut elf = Vec::new();
    elf.extend(b"\x7fELF");
    elf.extend([2, 1, 1]); // 64-bit, little-endian, version 1
    elf.resize(16, 0);
    elf.extend(2u16.to_le_bytes()); // ET_EXEC
    elf.extend(62u16.to_le_bytes()); // EM_X86_64
    elf.extend(1u32.to_le_bytes());
    elf.extend(ENTRY.to_le_bytes());
    elf.extend(EHDR.to_le_bytes()); // program headers right after this header
    elf.extend(0u64.to_le_bytes()); // no section headers
    elf.extend(0u32.to_le_bytes());
    for half in [EHDR as u16, PHDR as u16, 2, 64, 0, 0] {
        elf.extend(half.to_le_bytes());
    }
    let mut phdr = |kind: u32, flags: u32, offset: u64, addr: u64, size: u64, align: u64| {
        elf.extend(kind.to_le_bytes());
        elf.extend(flags.to_le_bytes());
        for word in [offset, addr, addr, size, size, align] {
            elf.extend(word.to_le_bytes());
        }
    };
    phdr(1, 5, code_at, ENTRY, GUEST.len() as u64, 16); // PT_LOAD, R+X
    phdr(4, 4, note_at, 0, 20, 4); // PT_NOTE
    elf.extend(GUEST);
    elf.resize(note_at as usize, 0);
    for word in [4u32, 4, 18] {
        elf.extend(word.to_le_bytes()); // name size, descriptor size, XEN_ELFNOTE_PHYS32_ENTRY
    }
    elf.extend(b"Xen\0");
    elf.extend((ENTRY as u32).to_le_bytes());
    elf
}

/// The process's minor page faults so far (it has one thread).
fn minor_faults() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the one rusage it is given, which is zeroed to begin with.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    u64::try_from(usage.ru_minflt).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_elf_has_one_load_segment_at_the_entry_and_a_pvh_note() {
        let elf = pvh_elf();
        let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
        let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(u64_at(24), ENTRY);
        // PT_LOAD: file offset, physical address, size.
        assert_eq!(u32_at(64), 1);
        let code_at = u64_at(64 + 8) as usize;
        assert_eq!(u64_at(64 + 24), ENTRY);
        assert_eq!(&elf[code_at..code_at + GUEST.len()], GUEST);
        // PT_NOTE: "Xen", type 18, the entry.
        assert_eq!(u32_at(120), 4);
        let note_at = u64_at(120 + 8) as usize;
        assert_eq!(u32_at(note_at + 8), 18);
        assert_eq!(&elf[note_at + 12..note_at + 16], b"Xen\0");
        assert_eq!(u32_at(note_at + 16), ENTRY as u32);
    }
}
