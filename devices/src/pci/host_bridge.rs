//! 00:00.0, the host bridge: identity only, no BARs.

use super::config::{BarMove, PciConfiguration, PciIdentity};
use super::device::{PciBar, PciDevice};

pub const HOST_BRIDGE_VENDOR: u16 = 0x8086;
pub const HOST_BRIDGE_DEVICE: u16 = 0x0d57;
const CLASS_HOST_BRIDGE: u32 = 0x06_00_00;

pub struct HostBridge {
    config: PciConfiguration,
}

impl HostBridge {
    pub fn new() -> Self {
        Self {
            config: PciConfiguration::new(PciIdentity {
                vendor: HOST_BRIDGE_VENDOR,
                device: HOST_BRIDGE_DEVICE,
                class: CLASS_HOST_BRIDGE,
                revision: 0,
                subsystem_vendor: 0,
                subsystem: 0,
            }),
        }
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for HostBridge {
    fn read_config_register(&mut self, reg: usize) -> u32 {
        self.config.read_reg(reg)
    }

    fn write_config_register(&mut self, reg: usize, offset: usize, data: &[u8]) -> Option<BarMove> {
        self.config.write_reg(reg, offset, data)
    }

    fn bars(&self) -> Vec<PciBar> {
        Vec::new()
    }

    fn read_bar(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write_bar(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
}
