//! Where guest output leaves nestor: the serial port and the virtio-console write to stdout,
//! or the serial port to a file, through [`HostOutput`]s, so neither a vCPU nor a device
//! worker ever waits for the host to drain them. The two share one stdout buffer: what the
//! guest wrote first is printed first. The writer threads start once the vCPUs run.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Instant;

use devices::host_output::DEFAULT_CAPACITY;
use devices::virtio::ThreadSetupHook;
use devices::{HostOutput, PendingThread};

use super::error::VmmError;
use crate::config::{SerialMode, VmConfig};

pub struct GuestOutputs {
    serial: Option<HostOutput>,
    console: Option<HostOutput>,
    /// Each distinct output once, to finish at exit.
    all: Vec<HostOutput>,
    /// Their writer threads, to start once the vCPUs run; output waits for them until then.
    pub threads: Vec<PendingThread>,
}

fn output(
    name: &str,
    file: File,
    setup: &ThreadSetupHook,
    threads: &mut Vec<PendingThread>,
) -> HostOutput {
    let setup = setup.clone();
    let (output, thread) = HostOutput::new(name, file, DEFAULT_CAPACITY, move || setup());
    threads.push(thread);
    output
}

/// nestor's own descriptor of stdout: written directly, it bypasses the standard library's
/// stdout buffer and lock, which the process exit would otherwise flush and wait on.
fn own_stdout() -> Result<File, VmmError> {
    let fd = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| VmmError::File {
            path: "stdout".into(),
            source,
        })?;
    Ok(File::from(fd))
}

fn open_serial_file(path: &Path) -> Result<File, VmmError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| VmmError::File {
            path: path.display().to_string(),
            source,
        })
}

fn writer(output: &Option<HostOutput>) -> Box<dyn Write + Send> {
    match output {
        Some(output) => Box::new(output.clone()),
        None => Box::new(std::io::sink()),
    }
}

impl GuestOutputs {
    /// Opens what `config` sends guest output to; `setup` runs first on each writer thread.
    pub fn open(config: &VmConfig, setup: &ThreadSetupHook) -> Result<Self, VmmError> {
        let mut threads = Vec::new();
        let stdout = if config.serial == SerialMode::Stdio || config.devices.console {
            Some(output("out-stdout", own_stdout()?, setup, &mut threads))
        } else {
            None
        };
        let mut all: Vec<HostOutput> = stdout.iter().cloned().collect();
        let serial = match &config.serial {
            SerialMode::Stdio => stdout.clone(),
            SerialMode::File(path) => {
                let file = open_serial_file(path)?;
                let file = output("out-serial", file, setup, &mut threads);
                all.push(file.clone());
                Some(file)
            }
            SerialMode::Off => None,
        };
        let console = stdout.filter(|_| config.devices.console);
        Ok(Self {
            serial,
            console,
            all,
            threads,
        })
    }

    /// Where the serial port writes.
    pub fn serial(&self) -> Box<dyn Write + Send> {
        writer(&self.serial)
    }

    /// Where the virtio-console writes.
    pub fn console(&self) -> Box<dyn Write + Send> {
        writer(&self.console)
    }

    /// Gives pending output until `deadline` to reach the host, then says what was lost.
    pub fn finish(&self, deadline: Instant) {
        for output in &self.all {
            output.wait_written(deadline);
            let lost = output.dropped() + output.unwritten() as u64;
            if lost > 0 {
                log::warn!(
                    "{}: {lost} bytes of guest output lost: the reader did not keep up",
                    output.name()
                );
            }
        }
    }
}
