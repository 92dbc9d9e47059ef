//! Test functions and registries shared by the PCI tests.

use std::sync::{Mutex, Once};

use vmm_sys_util::eventfd::EventFd;

use super::config::{BarMove, BarRegionKind, PciConfiguration, PciIdentity};
use super::device::{IoEventRegistry, PciBar, PciDevice};

/// A function with one memory BAR 0 that records accesses and has one ioeventfd at 0x10.
pub(crate) struct TestFunction {
    pub config: PciConfiguration,
    pub notify: EventFd,
    pub last_write: Option<(u64, Vec<u8>)>,
    /// Every `bar_placed` call, in order.
    pub placed: Vec<Option<u64>>,
}

impl TestFunction {
    /// A 4 KiB 32-bit BAR 0 at `address`.
    pub fn new(address: u64) -> Self {
        Self::with_bar(BarRegionKind::Memory32, 0x1000, address)
    }

    pub fn with_bar(kind: BarRegionKind, size: u64, address: u64) -> Self {
        let mut config = PciConfiguration::new(PciIdentity {
            vendor: 0x1234,
            device: 0x5678,
            class: 0xff_00_00,
            revision: 0,
            subsystem_vendor: 0,
            subsystem: 0,
        });
        config
            .add_memory_bar(0, kind, size, address, false)
            .unwrap();
        Self {
            config,
            notify: EventFd::new(0).unwrap(),
            last_write: None,
            placed: Vec::new(),
        }
    }
}

impl PciDevice for TestFunction {
    fn read_config_register(&mut self, reg: usize) -> u32 {
        self.config.read_reg(reg)
    }
    fn write_config_register(&mut self, reg: usize, offset: usize, data: &[u8]) -> Option<BarMove> {
        self.config.write_reg(reg, offset, data)
    }
    fn bars(&self) -> Vec<PciBar> {
        let (address, size) = self.config.bar(0).unwrap();
        vec![PciBar {
            index: 0,
            address,
            size,
        }]
    }
    fn read_bar(&mut self, _bar: usize, offset: u64, data: &mut [u8]) {
        data.fill(offset as u8);
    }
    fn write_bar(&mut self, _bar: usize, offset: u64, data: &[u8]) {
        self.last_write = Some((offset, data.to_vec()));
    }
    fn ioeventfds(&self, _bar: usize) -> Vec<(u64, &EventFd)> {
        vec![(0x10, &self.notify)]
    }
    fn bar_placed(&mut self, _bar: usize, address: Option<u64>) {
        self.placed.push(address);
    }
}

/// Records registrations as (registered, address).
#[derive(Default)]
pub(crate) struct IoEventLog(pub Mutex<Vec<(bool, u64)>>);

impl IoEventRegistry for IoEventLog {
    fn register(&self, _fd: &EventFd, address: u64) -> std::io::Result<()> {
        self.0.lock().unwrap().push((true, address));
        Ok(())
    }
    fn unregister(&self, _fd: &EventFd, address: u64) -> std::io::Result<()> {
        self.0.lock().unwrap().push((false, address));
        Ok(())
    }
}

/// Every warning logged by this test binary since it started.
static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct WarningLog;

impl log::Log for WarningLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            WARNINGS.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

/// Starts recording warnings (tests run in parallel: filter what you count).
pub(crate) fn record_warnings() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&WarningLog).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Warn);
    });
}

/// Warnings so far that contain `needle`.
pub(crate) fn warnings_containing(needle: &str) -> usize {
    WARNINGS
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.contains(needle))
        .count()
}
