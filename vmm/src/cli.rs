//! The command line, as clap sees it. Values are checked in [`crate::config`].

use std::path::PathBuf;

use clap::{Args, FromArgMatches, Parser, Subcommand};
use serde::{Deserialize, Serialize};

use crate::config::{parse_memory_size, ConfigError, SerialMode, VmConfig};
use crate::device_options::{DiskOptions, DmaEngineOptions, RngOptions};
use crate::seccomp::SeccompMode;
use crate::vfio_options::VfioOptions;
use crate::viommu::ViommuOptions;

#[derive(Parser, Debug)]
#[command(
    name = "nestor",
    version,
    about = "A small KVM virtual machine monitor with a paravirtual IOMMU",
    long_about = "nestor boots a Linux kernel (bzImage, or vmlinux through its PVH entry) or a \
                  PVH unikernel on KVM. Without --kernel it boots its bundled unikernel, which \
                  tours the machine or, with --cmdline probe=..., runs self-tests."
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// Each subcommand's options are built only when it is the one given: building clap's
/// option table is most of what parsing costs, and `run` is started often.
#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Command {
    /// Boot a guest and run it until it powers off, resets or writes the exit port.
    Run(RunArgs),
    /// Print the VM that `run` would build from the same options, as the JSON document
    /// `run --config` takes (see docs/config-file.md). Nothing is checked or opened.
    Config(RunArgs),
}

// The whole VM: what `run` takes as flags, or as one JSON document with `--config` (the
// same fields, spelled as the flags are; docs/config-file.md). A plain comment, not a doc
// comment: clap would make a doc comment the subcommands' help text, and since their
// options are added only when used (`defer`), it would replace `run`'s and `config`'s own.
#[derive(Args, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct RunArgs {
    /// Read the whole VM from this JSON file instead of the other options (see
    /// docs/config-file.md; `nestor config FLAGS...` prints one).
    #[arg(long, value_name = "FILE", conflicts_with_all = VM_ARGS)]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Kernel to boot: a Linux bzImage or an ELF with a PVH entry note (vmlinux, unikernel).
    /// Default: the bundled unikernel.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,

    /// Initial ramdisk, passed to the kernel.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,

    /// Kernel command line. Default for Linux: "console=ttyS0 reboot=k panic=-1".
    #[arg(long, value_name = "STRING")]
    pub cmdline: Option<String>,

    /// Guest memory in whole 4 KiB pages, e.g. 256M or 2G (a plain number means MiB).
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_memory_size)]
    #[serde(with = "crate::config_file::memory_size")]
    pub memory: u64,

    /// Number of vCPUs, each on its own thread.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: u32,

    /// Where COM1 goes: stdio, file=PATH or off. Input comes from stdin when it is a terminal.
    #[arg(long, value_name = "MODE", default_value = "stdio", value_parser = SerialMode::parse)]
    #[serde(with = "crate::config_file::as_flag")]
    pub serial: SerialMode,

    /// Seccomp filters for every thread: on (violations kill nestor), log (violations are
    /// logged by the kernel audit subsystem and allowed), or off.
    #[arg(long, value_name = "MODE", default_value = "on", value_parser = SeccompMode::parse)]
    #[serde(with = "crate::config_file::as_flag")]
    pub seccomp: SeccompMode,

    /// Report each step of the VM's start and end, the first KVM_RUN and the guest's writes
    /// to the boot-timer port (0x440) on stderr once the VM has ended, in microseconds since
    /// nestor started, with the page faults of each step.
    #[arg(long)]
    pub boot_timer: bool,

    /// Give the guest an i8254 PIT (KVM's in-kernel one, ports 0x40-0x43). Off by default:
    /// Linux keeps time on nestor with kvmclock and the local APIC timer and never uses it,
    /// and it slows the VM's start and end. For guests that program the PIT themselves.
    #[arg(long)]
    pub pit: bool,

    /// Offer hardware virtualization (VMX or SVM, as the host has it) to the guest, so it can
    /// run KVM guests of its own. Off by default: a guest that sees it initialises its KVM.
    #[arg(long)]
    pub nested: bool,

    /// End the VM with an error if it is still running after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,

    /// A virtio-blk disk backed by a raw image or block device: path=FILE[,readonly=on]
    /// [,iommu=on]. Repeatable; PCI device numbers follow the order given.
    #[arg(long, value_name = "OPTIONS", value_parser = DiskOptions::parse)]
    pub disk: Vec<DiskOptions>,

    /// A virtio-rng device fed from the host's getrandom; optionally iommu=on.
    #[arg(long, value_name = "OPTIONS", num_args = 0..=1, default_missing_value = "",
          value_parser = RngOptions::parse)]
    pub rng: Option<RngOptions>,

    /// A virtio-console (hvc0) on stdout; it takes stdin from the serial port when stdin
    /// is a terminal.
    #[arg(long)]
    pub console: bool,

    /// An emulated PCIe DMA engine (copy and fill jobs from a ring, docs/dma-engine.md), a
    /// test device for IOMMUs; iommu=on puts it behind the virtio-iommu, iommu=nested
    /// behind the virtio-iommu in nested mode (jobs carry PASIDs, translated through the
    /// guest's own stage-1 tables, docs/virtio-iommu-nested.md).
    #[arg(long, value_name = "OPTIONS", num_args = 0..=1, default_missing_value = "",
          value_parser = DmaEngineOptions::parse)]
    pub dma_engine: Option<DmaEngineOptions>,

    /// A virtio-iommu, even with no iommu=on device behind it:
    /// [bypass=on|off][,page-response-timeout=MS]. bypass=on lets endpoints the guest never
    /// attached reach memory (default off); page-response-timeout is how long, in nested
    /// mode, the guest has to answer a page request before the device is told it failed
    /// (1 to 600000, default 5000).
    #[arg(long, value_name = "OPTIONS", num_args = 0..=1, default_missing_value = "",
          value_parser = ViommuOptions::parse)]
    pub viommu: Option<ViommuOptions>,

    /// A host PCI device passed through over VFIO:
    /// path=/sys/bus/pci/devices/BDF[,iommu=on][,backend=container|iommufd]
    /// [,nested=require|prefer].
    /// It, and every other device in its IOMMU group, must be bound to vfio-pci.
    /// Without iommu=on all guest RAM is mapped for the device's DMA; with it, the device
    /// sits behind the virtio-iommu and reaches only what the guest maps. The back-end
    /// defaults to iommufd when /dev/iommu and the device's VFIO cdev exist, else the
    /// legacy container. nested= asks for the guest to own the device's stage 1 (iommufd,
    /// an ARM SMMUv3 host that nests): require stops if the host cannot, prefer falls back
    /// to MAP and UNMAP with a warning. Repeatable.
    #[arg(long, value_name = "OPTIONS", value_parser = VfioOptions::parse)]
    pub vfio: Vec<VfioOptions>,

    /// Serve the HTTP API (JSON over HTTP/1.1) on a Unix socket at this path, created
    /// owner-only and removed when nestor exits: state, pause, resume, stop, shutdown,
    /// metrics (see README, "API").
    #[arg(long, value_name = "PATH")]
    pub api_socket: Option<PathBuf>,
}

/// Every option `--config` stands for.
const VM_ARGS: [&str; 18] = [
    "kernel",
    "initrd",
    "cmdline",
    "memory",
    "cpus",
    "serial",
    "seccomp",
    "boot_timer",
    "pit",
    "nested",
    "timeout",
    "disk",
    "rng",
    "console",
    "viommu",
    "vfio",
    "dma_engine",
    "api_socket",
];

/// What `run` does with no options at all: clap's defaults, so a config file's missing
/// fields mean exactly what missing flags do.
impl Default for RunArgs {
    fn default() -> Self {
        let matches = Self::augment_args(clap::Command::new("run")).get_matches_from(["run"]);
        // The defaults are constants of this file; a test parses them.
        Self::from_arg_matches(&matches).expect("the default options parse")
    }
}

impl RunArgs {
    /// The VM these options describe, from the `--config` file when one is named.
    pub fn into_config(self) -> Result<VmConfig, ConfigError> {
        match &self.config {
            Some(path) => VmConfig::from_args(crate::config_file::load(path)?),
            None => VmConfig::from_args(self),
        }
    }
}
