//! The virtio-pci transport (common and device configuration, ISR, notifications, MSI-X
//! table and PBA, the PCI configuration access window, bus mastering) driven through
//! every device state, in front of each real virtio device, checked against the
//! transport's reference model:
//! - every register reads what the model says, in every width and at every offset;
//! - the device is activated exactly when the model says (DRIVER_OK, bus mastering, valid
//!   rings), with the queues and features the driver set up, and a reset revokes what the
//!   activation was handed: its memory and its interrupts reach nothing after it;
//! - MSI-X messages are routed and fired exactly as the model's vectors, masks and pending
//!   bits say; queue notifications reach the queue's eventfd.
#![no_main]

use std::sync::Arc;

use devices::pci::{Bdf, PciDevice};
use devices::virtio::pci::VirtioPciDevice;
use libfuzzer_sys::fuzz_target;
use nestor_fuzz::config_model::{ConfigModel, COMMAND_REG};
use nestor_fuzz::guest::ram;
use nestor_fuzz::input::Input;
use nestor_fuzz::interrupts::RecordingGroup;
use nestor_fuzz::observed::{device_dma, observed_device, queue_summary, ActivationLog};
use nestor_fuzz::transport_model::*;
use vm_memory::{GuestAddress, GuestMemory, Permissions};

const BAR_ADDRESS: u64 = 0xc000_0000;

struct Rig {
    dev: VirtioPciDevice,
    config: ConfigModel,
    group: Arc<RecordingGroup>,
    log: ActivationLog,
}

impl Rig {
    fn new(input: &mut Input) -> Self {
        let setup = input.u8();
        let log = ActivationLog::default();
        let (device, features, queue_max, device_model) = observed_device(setup, &log);
        let kind = match setup >> 4 & 3 {
            0 | 1 => DmaKind::Untranslated,
            2 => DmaKind::Bypassed,
            _ => DmaKind::Blocked,
        };
        let group = Arc::new(RecordingGroup::default());
        let mut dev = VirtioPciDevice::new(
            Bdf::new(0, 1, 0),
            device,
            ram(),
            group.clone(),
            BAR_ADDRESS,
            device_dma(kind),
        )
        .expect("transport");
        let mut regs = [0u32; 64];
        for (i, r) in regs.iter_mut().enumerate() {
            *r = dev.read_config_register(i);
        }
        assert_eq!(regs[4], BAR_ADDRESS as u32 | 4, "a 64-bit BAR");
        let transport = TransportModel::new(features, &queue_max, kind, device_model);
        Self {
            dev,
            config: ConfigModel::virtio(regs, transport),
            group,
            log,
        }
    }

    fn model(&mut self) -> &mut TransportModel {
        self.config.transport.as_mut().unwrap()
    }

    fn read_bar(&mut self, offset: u64, len: usize) {
        let mut data = vec![0u8; len];
        self.dev.read_bar(0, offset, &mut data);
        let want = self.model().read_bar(offset, len);
        assert_eq!(data, want, "BAR read of {len} bytes at {offset:#x}");
    }

    fn write_bar(&mut self, offset: u64, data: &[u8]) {
        self.dev.write_bar(0, offset, data);
        self.model().write_bar(offset, data);
    }

    fn read_config(&mut self, reg: usize) {
        let got = self.dev.read_config_register(reg);
        assert_eq!(
            got,
            self.config.read(reg),
            "configuration register {reg:#x}"
        );
    }

    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) {
        self.dev.write_config_register(reg, offset, data);
        self.config.write(reg, offset, data);
    }

    /// One step a well-behaved driver takes, so the fuzzer reaches every state quickly.
    fn driver_step(&mut self, input: &mut Input) {
        let write16 = |rig: &mut Self, offset: u64, v: u16| rig.write_bar(offset, &v.to_le_bytes());
        let write32 = |rig: &mut Self, offset: u64, v: u32| rig.write_bar(offset, &v.to_le_bytes());
        match input.u8() % 8 {
            0 => self.write_bar(0x14, &[ACKNOWLEDGE | DRIVER]),
            1 => {
                let wanted = self.model().offered & !(u64::from(input.u8() & 3) << 32);
                for half in 0..2u32 {
                    write32(self, 0x08, half);
                    write32(self, 0x0c, (wanted >> (32 * half)) as u32);
                }
            }
            2 => self.write_bar(0x14, &[ACKNOWLEDGE | DRIVER | FEATURES_OK]),
            3 => {
                let queues = self.model().queues.len();
                let q = input.below(queues + 1) as u16;
                let base = 0x1000 * (1 + 3 * u64::from(q)) + u64::from(input.u8()) * 0x1_0000;
                write16(self, 0x16, q);
                write16(self, 0x18, 1 << input.below(9));
                write16(self, 0x1a, q);
                for (lo, addr) in [(0x20, base), (0x28, base + 0x1000), (0x30, base + 0x2000)] {
                    write32(self, lo, addr as u32);
                    write32(self, lo + 4, (addr >> 32) as u32);
                }
                write16(self, 0x1c, 1);
            }
            4 => self.write_bar(0x14, &[ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK]),
            5 => self.write_config(COMMAND_REG, 0, &[0x06]),
            6 => {
                let control = 0x8000u16 | u16::from(input.bool()) << 14;
                self.write_config(self.config.msix_reg, 2, &control.to_le_bytes());
                for v in 0..u64::from(self.model().msix.vectors()) {
                    self.write_bar(TABLE_OFFSET + 16 * v, &(0xfee0_0000u64 + v).to_le_bytes());
                    self.write_bar(TABLE_OFFSET + 16 * v + 8, &(0x20 + v as u32).to_le_bytes());
                    self.write_bar(
                        TABLE_OFFSET + 16 * v + 12,
                        &u32::from(input.bool()).to_le_bytes(),
                    );
                }
            }
            _ => self.write_bar(0x14, &[0]),
        }
    }

    /// An activation, live or revoked, raises a queue or configuration interrupt.
    fn raise(&mut self, input: &mut Input) {
        let which = input.u8();
        let activations = self.log.activations.lock().unwrap();
        if activations.is_empty() {
            return;
        }
        let index = usize::from(which) % activations.len();
        let model = self.config.transport.as_mut().unwrap();
        let live = model.is_live(index);
        if live && model.is_paused() {
            // A paused activation's interrupt waits for bus mastering: not for one thread.
            return;
        }
        let queue = (which & 0x80 == 0).then(|| usize::from(which >> 4 & 3));
        match queue {
            Some(q) => activations[index].interrupt.notify_queue(q as u16),
            None => activations[index].interrupt.notify_config(),
        }
        if live {
            model.raise(queue);
        }
    }

    /// Everything the transport handed out and raised matches the model.
    fn check(&mut self) {
        let model = self.config.transport.as_mut().unwrap();
        let activations = self.log.activations.lock().unwrap();
        assert_eq!(activations.len(), model.activations.len(), "activations");
        if let (Some(got), Some(want)) = (activations.last(), model.activations.last()) {
            assert_eq!(got.acked, want.acked, "negotiated features");
            assert_eq!(got.queues, queue_summary(&want.queues), "activated queues");
        }
        for (i, a) in activations.iter().enumerate() {
            let live = model.is_live(i);
            assert_eq!(
                !a.mem.is_revoked(),
                live,
                "activation {i}: its memory is live exactly until a reset"
            );
            if !live {
                let reaches = a
                    .mem
                    .check_range(GuestAddress(0x1000), 16, Permissions::Read);
                assert!(
                    !reaches,
                    "activation {i}: a revoked activation still reaches memory"
                );
            }
        }
        drop(activations);
        assert_eq!(
            self.group.take_fired(),
            std::mem::take(&mut model.msix.fired),
            "MSI-X vectors fired"
        );
        assert_eq!(
            self.group.take_routes(),
            std::mem::take(&mut model.msix.routes),
            "MSI-X routes"
        );
        for (i, (_, fd)) in self.dev.ioeventfds(0).into_iter().enumerate() {
            let got = fd.read().unwrap_or(0);
            assert_eq!(
                got,
                std::mem::take(&mut model.notified[i]),
                "notifications of queue {i}"
            );
        }
        assert_eq!(self.dev.status(), model.status, "device status");
    }
}

fn bar_offset(input: &mut Input) -> u64 {
    match input.u8() % 8 {
        0 | 1 => input.below(0x40) as u64,
        2 => ISR_OFFSET + input.below(4) as u64,
        3 => DEVICE_OFFSET + input.below(0x40) as u64,
        4 => NOTIFY_OFFSET + input.below(0x20) as u64,
        5 => TABLE_OFFSET + input.below(0x60) as u64,
        6 => PBA_OFFSET + input.below(0x10) as u64,
        _ => input.below(BAR_SIZE as usize) as u64,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mut rig = Rig::new(&mut input);
    while !input.is_empty() {
        match input.u8() % 8 {
            0 => {
                let offset = bar_offset(&mut input);
                let len = input.pick(&[1, 2, 4, 8]);
                rig.read_bar(offset, len);
            }
            1 => {
                let offset = bar_offset(&mut input);
                let len = input.pick(&[1, 2, 4, 8]);
                let data: Vec<u8> = (0..len).map(|_| input.u8()).collect();
                rig.write_bar(offset, &data);
            }
            2 => {
                let reg = if input.bool() {
                    input.below(64)
                } else {
                    input.below(1024)
                };
                rig.read_config(reg);
            }
            3 => {
                let reg = match input.u8() % 4 {
                    0 => COMMAND_REG,
                    1 => rig.config.msix_reg,
                    2 => rig.config.pci_cfg_reg + 1 + input.below(4),
                    _ => input.below(70),
                };
                let len = input.pick(&[1, 2, 4, 3]);
                let offset = input.below(4);
                let data: Vec<u8> = (0..len).map(|_| input.u8()).collect();
                rig.write_config(reg, offset, &data);
            }
            4 | 5 => rig.driver_step(&mut input),
            6 => rig.raise(&mut input),
            _ => {
                let refuse = input.bool();
                *rig.log.refuse_next.lock().unwrap() = refuse;
                rig.model().refuse_activation = refuse;
            }
        }
        rig.check();
    }
});
