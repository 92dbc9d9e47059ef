//! The last exits of one vCPU, for the report printed when the guest crashes.
//!
//! Written on every exit, so it is a fixed ring owned by the vCPU thread: no lock, no
//! allocation, no formatting. Only a copy of it leaves the thread, once the thread has left
//! the guest (see [`super::crash_report`]).

use std::time::Duration;

use kvm_ioctls::VcpuExit;

/// Exits kept per vCPU.
pub const RECORDED_EXITS: usize = 32;
/// Data bytes kept per exit: an MMIO access is at most 8; string I/O can be longer.
pub const RECORDED_DATA: usize = 8;

/// What made KVM_RUN return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExitKind {
    IoIn,
    IoOut,
    MmioRead,
    MmioWrite,
    Hlt,
    Shutdown,
    SystemEvent,
    FailEntry,
    InternalError,
    /// KVM_EXIT_INTR or KVM_RUN interrupted by a signal (a kick).
    Intr,
    /// Any exit nestor does not handle.
    #[default]
    Other,
}

impl ExitKind {
    pub const ALL: [ExitKind; 11] = [
        ExitKind::IoIn,
        ExitKind::IoOut,
        ExitKind::MmioRead,
        ExitKind::MmioWrite,
        ExitKind::Hlt,
        ExitKind::Shutdown,
        ExitKind::SystemEvent,
        ExitKind::FailEntry,
        ExitKind::InternalError,
        ExitKind::Intr,
        ExitKind::Other,
    ];

    /// This kind's place in [`ExitKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            ExitKind::IoIn => "io-in",
            ExitKind::IoOut => "io-out",
            ExitKind::MmioRead => "mmio-read",
            ExitKind::MmioWrite => "mmio-write",
            ExitKind::Hlt => "hlt",
            ExitKind::Shutdown => "shutdown",
            ExitKind::SystemEvent => "system-event",
            ExitKind::FailEntry => "fail-entry",
            ExitKind::InternalError => "internal-error",
            ExitKind::Intr => "intr",
            ExitKind::Other => "other",
        }
    }

    /// Whether `address` is a port rather than a guest-physical address or a code.
    pub fn is_port_access(self) -> bool {
        matches!(self, ExitKind::IoIn | ExitKind::IoOut)
    }

    pub fn is_access(self) -> bool {
        matches!(
            self,
            ExitKind::IoIn | ExitKind::IoOut | ExitKind::MmioRead | ExitKind::MmioWrite
        )
    }
}

/// One exit, as plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitRecord {
    /// Since nestor started.
    pub at: Duration,
    pub kind: ExitKind,
    /// The port or guest-physical address of an access; the event type of a system event;
    /// the hardware reason of a failed entry.
    pub address: u64,
    /// Bytes accessed, which may be more than the bytes kept.
    pub size: u32,
    /// The first bytes written, or read once the bus had filled them.
    pub data: [u8; RECORDED_DATA],
}

impl ExitRecord {
    /// An exit that carries no access.
    pub fn event(at: Duration, kind: ExitKind, code: u64) -> Self {
        Self {
            at,
            kind,
            address: code,
            ..Default::default()
        }
    }

    /// A port or MMIO access of `bytes`.
    pub fn access(at: Duration, kind: ExitKind, address: u64, bytes: &[u8]) -> Self {
        let mut data = [0; RECORDED_DATA];
        let kept = bytes.len().min(RECORDED_DATA);
        data[..kept].copy_from_slice(&bytes[..kept]);
        Self {
            at,
            kind,
            address,
            size: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            data,
        }
    }

    /// What `exit` was, `at` (since nestor started); for a read, once the bus has filled
    /// the data.
    pub fn of(exit: &VcpuExit<'_>, at: Duration) -> Self {
        let event = |kind, code| Self::event(at, kind, code);
        match exit {
            VcpuExit::IoIn(port, data) => Self::access(at, ExitKind::IoIn, (*port).into(), data),
            VcpuExit::IoOut(port, data) => Self::access(at, ExitKind::IoOut, (*port).into(), data),
            VcpuExit::MmioRead(addr, data) => Self::access(at, ExitKind::MmioRead, *addr, data),
            VcpuExit::MmioWrite(addr, data) => Self::access(at, ExitKind::MmioWrite, *addr, data),
            VcpuExit::Hlt => event(ExitKind::Hlt, 0),
            VcpuExit::Shutdown => event(ExitKind::Shutdown, 0),
            VcpuExit::SystemEvent(kind, _) => event(ExitKind::SystemEvent, (*kind).into()),
            VcpuExit::FailEntry(reason, _) => event(ExitKind::FailEntry, *reason),
            VcpuExit::InternalError => event(ExitKind::InternalError, 0),
            VcpuExit::Intr => event(ExitKind::Intr, 0),
            _ => event(ExitKind::Other, 0),
        }
    }

    /// The data bytes that were kept.
    pub fn kept_data(&self) -> &[u8] {
        &self.data[..(self.size as usize).min(RECORDED_DATA)]
    }
}

/// A ring of the last [`RECORDED_EXITS`] exits.
pub struct FlightRecorder {
    ring: [ExitRecord; RECORDED_EXITS],
    /// Exits recorded since the start; the next one goes at `total % RECORDED_EXITS`.
    total: u64,
}

impl Default for FlightRecorder {
    fn default() -> Self {
        Self {
            ring: [ExitRecord::default(); RECORDED_EXITS],
            total: 0,
        }
    }
}

impl FlightRecorder {
    pub fn record(&mut self, record: ExitRecord) {
        self.ring[(self.total % RECORDED_EXITS as u64) as usize] = record;
        self.total += 1;
    }

    /// How many exits were recorded in all, including those overwritten since.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The exits still held, oldest first.
    pub fn oldest_first(&self) -> Vec<ExitRecord> {
        let held = self.total.min(RECORDED_EXITS as u64) as usize;
        let oldest = ((self.total - held as u64) % RECORDED_EXITS as u64) as usize;
        (0..held)
            .map(|i| self.ring[(oldest + i) % RECORDED_EXITS])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_at_its_index() {
        for (i, kind) in ExitKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
        }
        let mut names: Vec<_> = ExitKind::ALL.iter().map(|k| k.name()).collect();
        names.dedup();
        assert_eq!(names.len(), ExitKind::ALL.len());
    }

    fn port_write(n: u64) -> ExitRecord {
        ExitRecord::access(Duration::from_micros(n), ExitKind::IoOut, n, &[n as u8])
    }

    fn addresses(recorder: &FlightRecorder) -> Vec<u64> {
        recorder.oldest_first().iter().map(|r| r.address).collect()
    }

    #[test]
    fn an_empty_recorder_holds_nothing() {
        let recorder = FlightRecorder::default();
        assert!(recorder.oldest_first().is_empty());
        assert_eq!(recorder.total(), 0);
    }

    #[test]
    fn before_wrapping_every_exit_is_held_in_order() {
        let mut recorder = FlightRecorder::default();
        for n in 0..5 {
            recorder.record(port_write(n));
        }
        assert_eq!(addresses(&recorder), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_full_ring_holds_exactly_the_last_exits() {
        let mut recorder = FlightRecorder::default();
        for n in 0..RECORDED_EXITS as u64 {
            recorder.record(port_write(n));
        }
        assert_eq!(
            addresses(&recorder),
            (0..RECORDED_EXITS as u64).collect::<Vec<_>>()
        );
    }

    #[test]
    fn wrapping_drops_the_oldest_and_keeps_the_order() {
        let mut recorder = FlightRecorder::default();
        let total = 3 * RECORDED_EXITS as u64 + 7;
        for n in 0..total {
            recorder.record(port_write(n));
        }
        assert_eq!(recorder.total(), total);
        let expected: Vec<u64> = (total - RECORDED_EXITS as u64..total).collect();
        assert_eq!(addresses(&recorder), expected);
        let times: Vec<Duration> = recorder.oldest_first().iter().map(|r| r.at).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn exits_are_recorded_with_their_place_and_data() {
        let at = Duration::from_micros(5);
        let mut read = [0x60];
        let record = ExitRecord::of(&VcpuExit::IoIn(0x3fd, &mut read), at);
        assert_eq!(
            (record.kind, record.address, record.kept_data()),
            (ExitKind::IoIn, 0x3fd, &[0x60][..])
        );
        let record = ExitRecord::of(&VcpuExit::MmioWrite(0xfee0_00b0, &[0, 0, 0, 0]), at);
        assert_eq!((record.kind, record.size), (ExitKind::MmioWrite, 4));
        let record = ExitRecord::of(&VcpuExit::FailEntry(0x21, 0), at);
        assert_eq!((record.kind, record.address), (ExitKind::FailEntry, 0x21));
        assert_eq!(
            ExitRecord::of(&VcpuExit::Shutdown, at).kind,
            ExitKind::Shutdown
        );
        assert_eq!(ExitRecord::of(&VcpuExit::Nmi, at).kind, ExitKind::Other);
    }

    #[test]
    fn long_accesses_keep_their_size_and_first_bytes() {
        let bytes: Vec<u8> = (1..=20).collect();
        let record = ExitRecord::access(Duration::ZERO, ExitKind::IoOut, 0x3f8, &bytes);
        assert_eq!(record.size, 20);
        assert_eq!(record.kept_data(), &bytes[..RECORDED_DATA]);
        let short = ExitRecord::access(Duration::ZERO, ExitKind::MmioRead, 0xfee0_0000, &[7, 0]);
        assert_eq!(short.kept_data(), [7, 0]);
        assert!(ExitRecord::event(Duration::ZERO, ExitKind::Shutdown, 0)
            .kept_data()
            .is_empty());
    }
}
