//! The PC devices a guest expects at fixed I/O ports.

pub mod boot_timer;
pub mod exit_port;
pub mod ged;
pub mod i8042;
pub mod ports;
pub mod power;
pub mod serial;

pub use boot_timer::BootTimer;
pub use exit_port::ExitPort;
pub use ged::{generic_event_device, GenericEventDevice, PowerButton};
pub use i8042::I8042;
pub use power::{AcpiPowerControl, ResetControl};
pub use serial::{EventFdTrigger, SerialDevice};
