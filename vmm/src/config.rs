//! A checked VM configuration: everything the user said, validated before any KVM work.

use std::fs::File;
use std::path::{Path, PathBuf};

use arch::boot::{detect_format, BootError, ImageFile, KernelFormat};
use arch::layout::{MIN_MEMORY, MMIO_HOLE_END, MMIO_HOLE_START};

use crate::cli::RunArgs;
use crate::device_options::{DiskOptions, DmaEngineOptions, RngOptions};
use crate::seccomp::SeccompMode;
use crate::vfio_host_checks::{check_host, VfioHostError};
use crate::vfio_options::VfioOptions;
use crate::viommu::ViommuOptions;

/// The command line Linux gets when the user gives none.
pub const DEFAULT_LINUX_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";
const PAGE_SIZE: u64 = 4096;
/// APIC IDs are 8 bits in the MADT we build, and 0xff is the broadcast ID.
pub const MAX_CPUS: u32 = 254;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot open {what} {path}: {source}")]
    Open {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Kernel {
        path: PathBuf,
        #[source]
        source: BootError,
    },
    #[error("--memory {got} KiB is not a whole number of 4 KiB pages")]
    MemoryNotPageSized { got: u64 },
    #[error("--memory {got} MiB is too small: nestor needs at least {min} MiB")]
    MemoryTooSmall { got: u64, min: u64 },
    #[error("--memory {got} MiB is more than this host has ({host} MiB); ask for less")]
    MemoryTooLarge { got: u64, host: u64 },
    #[error("--cpus must be between 1 and {max}, not {got}")]
    Cpus { got: u32, max: u32 },
    #[error("--timeout must be at least 1 second")]
    Timeout,
    #[error("--viommu: {0}")]
    Viommu(String),
    #[error(transparent)]
    VfioHost(#[from] VfioHostError),
    #[error(transparent)]
    File(#[from] crate::config_file::ConfigFileError),
    #[error("--api-socket {path}: {reason}")]
    ApiSocket { path: PathBuf, reason: String },
}

/// What to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSource {
    Bundled,
    File { path: PathBuf, format: KernelFormat },
}

/// Where the serial console goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialMode {
    Stdio,
    File(PathBuf),
    Off,
}

impl SerialMode {
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "stdio" => Ok(SerialMode::Stdio),
            "off" => Ok(SerialMode::Off),
            other => match other.strip_prefix("file=") {
                Some(path) if !path.is_empty() => Ok(SerialMode::File(path.into())),
                _ => Err("expected stdio, off or file=PATH".into()),
            },
        }
    }
}

/// Parses 512K, 256M, 2G, 1T or a plain number of MiB into bytes.
pub fn parse_memory_size(value: &str) -> Result<u64, String> {
    let value = value.trim();
    let (digits, shift) = match value.char_indices().last() {
        Some((i, 'K' | 'k')) => (&value[..i], 10),
        Some((i, 'M' | 'm')) => (&value[..i], 20),
        Some((i, 'G' | 'g')) => (&value[..i], 30),
        Some((i, 'T' | 't')) => (&value[..i], 40),
        _ => (value, 20),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("'{value}' is not a size like 256M or 2G"))?;
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("'{value}' is too large"))
}

#[derive(Debug, Clone)]
pub struct VmConfig {
    pub kernel: KernelSource,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub memory: u64,
    pub cpus: u8,
    pub serial: SerialMode,
    pub seccomp: SeccompMode,
    pub boot_timer: bool,
    /// An in-kernel i8254 PIT.
    pub pit: bool,
    pub nested: bool,
    pub timeout: Option<std::time::Duration>,
    pub devices: VirtioConfig,
    /// Where the HTTP API listens, if anywhere.
    pub api_socket: Option<PathBuf>,
    /// The options this VM was built from, as the API reports them.
    pub args: RunArgs,
}

/// The virtio devices asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct VirtioConfig {
    pub disks: Vec<DiskOptions>,
    pub rng: Option<RngOptions>,
    pub console: bool,
    pub dma_engine: Option<DmaEngineOptions>,
    pub viommu: Option<ViommuOptions>,
    /// Host PCI devices to pass through, in the order given.
    pub vfio: Vec<VfioOptions>,
}

fn open(what: &'static str, path: &Path) -> Result<File, ConfigError> {
    let file = File::open(path).map_err(|source| ConfigError::Open {
        what,
        path: path.into(),
        source,
    })?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(ConfigError::Open {
            what,
            path: path.into(),
            source: std::io::Error::other("is a directory"),
        });
    }
    Ok(file)
}

/// Host RAM in bytes (MemTotal), from sysinfo(2): one syscall, where reading /proc/meminfo
/// makes the kernel format every line of it.
fn host_memory() -> Option<u64> {
    // SAFETY: `sysinfo` is plain integers, for which all zeroes is a valid value.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: sysinfo(2) only writes the struct it is given.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return None;
    }
    info.totalram.checked_mul(u64::from(info.mem_unit))
}

/// Checks each `--vfio` device against sysfs and the device nodes under `dev`, and
/// settles the back-end of those that left it to the host: a guest is not booted without
/// the device it was promised.
fn check_vfio(vfio: Vec<VfioOptions>, dev: &Path) -> Result<Vec<VfioOptions>, ConfigError> {
    let vfio = vfio
        .into_iter()
        .map(|device| {
            let backend = check_host(&device, dev)?;
            Ok(VfioOptions {
                backend: Some(backend),
                ..device
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    Ok(vfio)
}

impl VmConfig {
    pub fn from_args(args: RunArgs) -> Result<Self, ConfigError> {
        let given = args.clone();
        let kernel = match &args.kernel {
            None => KernelSource::Bundled,
            Some(path) => {
                let file = open("kernel", path)?;
                let mut image = ImageFile::new(file).map_err(|source| ConfigError::Open {
                    what: "kernel",
                    path: path.into(),
                    source,
                })?;
                let format = detect_format(&mut image).map_err(|source| ConfigError::Kernel {
                    path: path.clone(),
                    source,
                })?;
                KernelSource::File {
                    path: path.clone(),
                    format,
                }
            }
        };
        if let Some(initrd) = &args.initrd {
            open("initrd", initrd)?;
        }
        let mib = |bytes: u64| bytes >> 20;
        // KVM maps guest RAM in whole pages.
        if args.memory & (PAGE_SIZE - 1) != 0 {
            return Err(ConfigError::MemoryNotPageSized {
                got: args.memory >> 10,
            });
        }
        if args.memory < MIN_MEMORY {
            return Err(ConfigError::MemoryTooSmall {
                got: mib(args.memory),
                min: mib(MIN_MEMORY),
            });
        }
        if let Some(host) = host_memory() {
            if args.memory > host {
                return Err(ConfigError::MemoryTooLarge {
                    got: mib(args.memory),
                    host: mib(host),
                });
            }
        }
        if args.cpus == 0 || args.cpus > MAX_CPUS {
            return Err(ConfigError::Cpus {
                got: args.cpus,
                max: MAX_CPUS,
            });
        }
        if args.timeout == Some(0) {
            return Err(ConfigError::Timeout);
        }
        if let Some(viommu) = &args.viommu {
            viommu.check().map_err(ConfigError::Viommu)?;
        }
        let vfio = check_vfio(args.vfio, Path::new("/dev"))?;
        let cmdline = match (&kernel, args.cmdline) {
            (_, Some(cmdline)) => cmdline,
            (KernelSource::Bundled, None) => String::new(),
            (KernelSource::File { .. }, None) => DEFAULT_LINUX_CMDLINE.into(),
        };
        Ok(VmConfig {
            kernel,
            initrd: args.initrd,
            cmdline,
            memory: args.memory,
            cpus: args.cpus as u8,
            serial: args.serial,
            seccomp: args.seccomp,
            boot_timer: args.boot_timer,
            pit: args.pit,
            nested: args.nested,
            timeout: args.timeout.map(std::time::Duration::from_secs),
            devices: VirtioConfig {
                disks: args.disk,
                rng: args.rng,
                console: args.console,
                dma_engine: args.dma_engine,
                viommu: args.viommu,
                vfio,
            },
            api_socket: args.api_socket,
            args: given,
        })
    }

    /// Guest RAM as the guest sees it (RAM regions skip the MMIO hole).
    pub fn guest_ram_top(&self) -> u64 {
        if self.memory > MMIO_HOLE_START {
            MMIO_HOLE_END + (self.memory - MMIO_HOLE_START)
        } else {
            self.memory
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfio_options::VfioBackend;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory_size("256M"), Ok(256 << 20));
        assert_eq!(parse_memory_size("2G"), Ok(2 << 30));
        assert_eq!(parse_memory_size("512k"), Ok(512 << 10));
        assert_eq!(parse_memory_size("128"), Ok(128 << 20));
        assert!(parse_memory_size("lots").is_err());
        assert!(parse_memory_size("M").is_err());
        assert!(parse_memory_size("-1G").is_err());
        assert!(parse_memory_size("99999999999T").is_err());
    }

    #[test]
    fn vfio_devices_leave_with_a_back_end_and_host_mistakes_come_first() {
        use crate::vfio_host_checks::tests::FakeHost;
        assert!(check_vfio(vec![], Path::new("/nonexistent"))
            .unwrap()
            .is_empty());
        let host = FakeHost::ready();
        let device = VfioOptions {
            path: host.device(),
            iommu: true,
            backend: None,
            nested: None,
        };
        let checked = check_vfio(vec![device.clone()], &host.dev()).unwrap();
        assert_eq!(checked[0].backend, Some(VfioBackend::Iommufd));
        let container = VfioOptions {
            backend: Some(VfioBackend::Container),
            ..device.clone()
        };
        let checked = check_vfio(vec![container.clone()], &host.dev()).unwrap();
        assert_eq!(checked, vec![container]);
        let missing = VfioOptions {
            path: host.root.join("sys/devices/0000:09:00.0"),
            ..device.clone()
        };
        assert!(matches!(
            check_vfio(vec![device, missing], &host.dev()),
            Err(ConfigError::VfioHost(VfioHostError::NoDevice { .. }))
        ));
    }

    #[test]
    fn serial_modes() {
        assert_eq!(SerialMode::parse("stdio"), Ok(SerialMode::Stdio));
        assert_eq!(SerialMode::parse("off"), Ok(SerialMode::Off));
        assert_eq!(
            SerialMode::parse("file=/tmp/x"),
            Ok(SerialMode::File("/tmp/x".into()))
        );
        assert!(SerialMode::parse("file=").is_err());
        assert!(SerialMode::parse("tcp").is_err());
    }
}
