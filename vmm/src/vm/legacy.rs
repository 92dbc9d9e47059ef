//! The fixed PC devices on the PIO bus (COM1, exit and boot-timer ports, power and reset)
//! and the ACPI event device with the power button, in MMIO.

use std::io::Write;
use std::sync::{Arc, Mutex};

use devices::legacy::ged::{generic_event_device, GED_REGISTER_LEN};
use devices::legacy::ports::*;
use devices::legacy::{
    boot_timer::BootMark, AcpiPowerControl, BootTimer, ExitPort, PowerButton, ResetControl,
    SerialDevice, I8042,
};
use devices::{Bus, VmControl};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

use super::error::{kvm_err, VmmError};

pub struct LegacyDevices {
    pub serial: Arc<Mutex<SerialDevice>>,
    pub boot_marks: Arc<Mutex<Vec<BootMark>>>,
    pub power_button: PowerButton,
}

fn bus_err(e: devices::BusError) -> VmmError {
    VmmError::Device(e.to_string())
}

pub fn add_legacy_devices(
    vm: &VmFd,
    pio: &Bus,
    mmio: &Bus,
    control: &VmControl,
    serial_output: Box<dyn Write + Send>,
) -> Result<LegacyDevices, VmmError> {
    let serial_irq = EventFd::new(0).map_err(|e| VmmError::Device(e.to_string()))?;
    vm.register_irqfd(&serial_irq, COM1_GSI)
        .map_err(kvm_err("KVM_IRQFD for COM1"))?;
    let serial = Arc::new(Mutex::new(SerialDevice::new(serial_irq, serial_output)));
    pio.insert(serial.clone(), COM1_BASE, COM1_LEN)
        .map_err(bus_err)?;

    let boot_timer = BootTimer::new(control.clone());
    let boot_marks = boot_timer.marks();
    pio.insert(Arc::new(Mutex::new(boot_timer)), BOOT_TIMER_PORT, 1)
        .map_err(bus_err)?;
    pio.insert(
        Arc::new(Mutex::new(ExitPort::new(control.clone()))),
        EXIT_PORT,
        1,
    )
    .map_err(bus_err)?;
    pio.insert(
        Arc::new(Mutex::new(AcpiPowerControl::new(control.clone()))),
        ACPI_SLEEP_CONTROL,
        ACPI_REGISTERS_LEN,
    )
    .map_err(bus_err)?;
    pio.insert(
        Arc::new(Mutex::new(ResetControl::new(control.clone()))),
        RESET_CONTROL,
        1,
    )
    .map_err(bus_err)?;
    pio.insert(
        Arc::new(Mutex::new(I8042::new(control.clone()))),
        I8042_DATA,
        I8042_LEN,
    )
    .map_err(bus_err)?;
    let power_button = add_event_device(vm, mmio)?;
    Ok(LegacyDevices {
        serial,
        boot_marks,
        power_button,
    })
}

/// The Generic Event Device at `GED_START`, interrupting on `GED_GSI`.
fn add_event_device(vm: &VmFd, mmio: &Bus) -> Result<PowerButton, VmmError> {
    let irq = EventFd::new(0).map_err(|e| VmmError::Device(e.to_string()))?;
    vm.register_irqfd(&irq, GED_GSI)
        .map_err(kvm_err("KVM_IRQFD for the ACPI event device"))?;
    let (ged, power_button) = generic_event_device(irq);
    mmio.insert_concurrent(Arc::new(ged), arch::layout::GED_START, GED_REGISTER_LEN)
        .map_err(bus_err)?;
    Ok(power_button)
}
