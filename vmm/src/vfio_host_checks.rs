//! What a host must have ready before `--vfio` can pass a device through, read from sysfs
//! and /dev only, so that each mistake gets one line saying how to fix it instead of an
//! errno from deep inside VFIO.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::vfio_options::{VfioBackend, VfioOptions};

/// Drivers a device may have and still not stop its IOMMU group from being used: VFIO's
/// own, none at all, and pci-stub, which the kernel allows for this.
const VIABLE_DRIVERS: [&str; 2] = ["vfio-pci", "pci-stub"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VfioHostError {
    #[error("--vfio {path}: no such device; give /sys/bus/pci/devices/<BDF> of a host PCI device (see lspci -D)")]
    NoDevice { path: PathBuf },
    #[error("--vfio {bdf}: bound to {driver}, not vfio-pci; unbind it and bind vfio-pci (write vfio-pci to its driver_override, then its BDF to /sys/bus/pci/drivers_probe)")]
    NotVfioPci { bdf: String, driver: String },
    #[error("--vfio {bdf}: bound to no driver; bind it to vfio-pci (write vfio-pci to its driver_override, then its BDF to /sys/bus/pci/drivers_probe)")]
    Unbound { bdf: String },
    #[error("--vfio {bdf}: no IOMMU group; turn the host IOMMU on (intel_iommu=on or amd_iommu=on on the host kernel command line)")]
    NoIommuGroup { bdf: String },
    #[error("--vfio {bdf}: {other} in the same IOMMU group {group} is bound to {driver}; bind it to vfio-pci too (or unbind it)")]
    GroupMemberNotVfio {
        bdf: String,
        other: String,
        group: String,
        driver: String,
    },
    #[error("--vfio {bdf}: {node} is absent; {fix}")]
    NodeAbsent {
        bdf: String,
        node: PathBuf,
        fix: &'static str,
    },
    #[error("--vfio {bdf}: permission denied opening {node}; run nestor as root or give this user read-write access to it")]
    PermissionDenied { bdf: String, node: PathBuf },
    #[error("--vfio {bdf}: {node} is busy; another process (another VM?) holds the device")]
    Busy { bdf: String, node: PathBuf },
    #[error("--vfio {bdf}: nested= hands the guest the device's stage 1 behind the virtio-iommu; add iommu=on")]
    NestedNeedsIommu { bdf: String },
    #[error("--vfio {bdf}: nested translation goes through iommufd; {fix}")]
    NestedNeedsIommufd { bdf: String, fix: &'static str },
    #[error("--vfio {bdf}: cannot open {node}: {reason}")]
    Open {
        bdf: String,
        node: PathBuf,
        reason: String,
    },
}

/// The driver a sysfs device directory is bound to, if any.
fn driver_of(device: &Path) -> Option<String> {
    let target = fs::read_link(device.join("driver")).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Checks `options` against the sysfs device directory it names and the device nodes
/// under `dev` (`/dev` on a real host); answers the back-end to use, the one asked for or
/// else [`default_backend`].
pub fn check_host(options: &VfioOptions, dev: &Path) -> Result<VfioBackend, VfioHostError> {
    let device = &options.path;
    let bdf = options.bdf();
    if !device.is_dir() {
        return Err(VfioHostError::NoDevice {
            path: device.clone(),
        });
    }
    match driver_of(device) {
        Some(d) if d == "vfio-pci" => {}
        Some(driver) => return Err(VfioHostError::NotVfioPci { bdf, driver }),
        None => return Err(VfioHostError::Unbound { bdf }),
    }
    let group = fs::read_link(device.join("iommu_group"))
        .ok()
        .map(|g| name_of(&g))
        .ok_or_else(|| VfioHostError::NoIommuGroup { bdf: bdf.clone() })?;
    check_group_members(device, &bdf, &group)?;
    let backend = options
        .backend
        .unwrap_or_else(|| default_backend(device, dev));
    if options.nested.is_some() {
        if !options.iommu {
            return Err(VfioHostError::NestedNeedsIommu { bdf });
        }
        if backend != VfioBackend::Iommufd {
            let fix = if options.backend.is_some() {
                "drop backend=container"
            } else {
                "this host has no /dev/iommu or the device no VFIO cdev (CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV)"
            };
            return Err(VfioHostError::NestedNeedsIommufd { bdf, fix });
        }
    }
    for node in device_nodes(backend, device, dev, &bdf, &group)? {
        check_opens(&bdf, &node)?;
    }
    Ok(backend)
}

/// iommufd when the host has it and the device has a VFIO cdev; else the legacy container,
/// which every VFIO host has.
pub fn default_backend(device: &Path, dev: &Path) -> VfioBackend {
    let has_cdev = cdev_node(device, dev).is_some_and(|node| node.exists());
    if has_cdev && dev.join("iommu").exists() {
        VfioBackend::Iommufd
    } else {
        VfioBackend::Container
    }
}

/// The device's VFIO cdev under `dev`, as sysfs names it (under the device's vfio-dev/).
fn cdev_node(device: &Path, dev: &Path) -> Option<PathBuf> {
    let entry = fs::read_dir(device.join("vfio-dev")).ok()?.next()?.ok()?;
    Some(dev.join("vfio/devices").join(entry.file_name()))
}

/// Every other device of the group must be bound to nothing or to a VFIO-friendly driver,
/// or VFIO refuses the whole group.
fn check_group_members(device: &Path, bdf: &str, group: &str) -> Result<(), VfioHostError> {
    let members = fs::read_dir(device.join("iommu_group").join("devices"))
        .map_err(|_| VfioHostError::NoIommuGroup { bdf: bdf.into() })?;
    let mut names: Vec<PathBuf> = members.filter_map(|m| m.ok().map(|m| m.path())).collect();
    names.sort();
    for member in names {
        let other = name_of(&member);
        if other == bdf {
            continue;
        }
        if let Some(driver) = driver_of(&member) {
            if !VIABLE_DRIVERS.contains(&driver.as_str()) {
                return Err(VfioHostError::GroupMemberNotVfio {
                    bdf: bdf.into(),
                    other,
                    group: group.into(),
                    driver,
                });
            }
        }
    }
    Ok(())
}

/// The device nodes the chosen back-end opens, each present.
fn device_nodes(
    backend: VfioBackend,
    device: &Path,
    dev: &Path,
    bdf: &str,
    group: &str,
) -> Result<Vec<PathBuf>, VfioHostError> {
    let absent = |node: PathBuf, fix: &'static str| VfioHostError::NodeAbsent {
        bdf: bdf.into(),
        node,
        fix,
    };
    let vfio_modules = "load the VFIO modules (modprobe vfio-pci)";
    let nodes = match backend {
        VfioBackend::Container => vec![
            (dev.join("vfio/vfio"), vfio_modules),
            (dev.join("vfio").join(group), vfio_modules),
        ],
        VfioBackend::Iommufd => {
            let no_cdev = "the host kernel has no VFIO device cdev (CONFIG_VFIO_DEVICE_CDEV); use backend=container";
            let cdev =
                cdev_node(device, dev).ok_or_else(|| absent(dev.join("vfio/devices"), no_cdev))?;
            vec![
                (
                    dev.join("iommu"),
                    "load iommufd (modprobe iommufd) or use backend=container",
                ),
                (cdev, no_cdev),
            ]
        }
    };
    nodes
        .into_iter()
        .map(|(node, fix)| {
            if node.exists() {
                Ok(node)
            } else {
                Err(absent(node, fix))
            }
        })
        .collect()
}

fn check_opens(bdf: &str, node: &Path) -> Result<(), VfioHostError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(node)
        .map(drop)
        .map_err(|e| open_error(bdf, node, &e))
}

/// What went wrong opening `node`, in the user's terms.
fn open_error(bdf: &str, node: &Path, e: &io::Error) -> VfioHostError {
    let (bdf, node) = (bdf.to_string(), node.to_path_buf());
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => VfioHostError::PermissionDenied { bdf, node },
        Some(libc::EBUSY) => VfioHostError::Busy { bdf, node },
        _ => VfioHostError::Open {
            bdf,
            node,
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const BDF: &str = "0000:01:00.0";
    const SIBLING: &str = "0000:01:00.1";
    const GROUP: &str = "7";

    /// A fake /sys and /dev in a fresh temporary directory, removed when dropped.
    pub(crate) struct FakeHost {
        pub(crate) root: PathBuf,
    }

    impl FakeHost {
        /// A host where `BDF` is ready for either back-end, alone in group `GROUP`.
        pub(crate) fn ready() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let root = std::env::temp_dir().join(format!(
                "nestor-vfio-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let host = Self { root };
            for dir in [
                "sys/drivers/vfio-pci",
                "sys/drivers/nvme",
                "sys/drivers/pci-stub",
                "sys/groups/7/devices",
                "dev/vfio/devices",
            ] {
                fs::create_dir_all(host.root.join(dir)).unwrap();
            }
            host.add_device(BDF, Some("vfio-pci"));
            fs::create_dir_all(host.device().join("vfio-dev/vfio0")).unwrap();
            for node in [
                "dev/vfio/vfio",
                "dev/vfio/7",
                "dev/iommu",
                "dev/vfio/devices/vfio0",
            ] {
                fs::write(host.root.join(node), b"").unwrap();
            }
            host
        }

        fn device_path(&self, bdf: &str) -> PathBuf {
            self.root.join("sys/devices").join(bdf)
        }

        pub(crate) fn device(&self) -> PathBuf {
            self.device_path(BDF)
        }

        fn add_device(&self, bdf: &str, driver: Option<&str>) {
            let device = self.device_path(bdf);
            fs::create_dir_all(&device).unwrap();
            symlink(
                self.root.join("sys/groups").join(GROUP),
                device.join("iommu_group"),
            )
            .unwrap();
            symlink(&device, self.root.join("sys/groups/7/devices").join(bdf)).unwrap();
            self.bind(bdf, driver);
        }

        fn bind(&self, bdf: &str, driver: Option<&str>) {
            let link = self.device_path(bdf).join("driver");
            let _ = fs::remove_file(&link);
            if let Some(driver) = driver {
                symlink(self.root.join("sys/drivers").join(driver), link).unwrap();
            }
        }

        pub(crate) fn dev(&self) -> PathBuf {
            self.root.join("dev")
        }

        fn check(&self, backend: VfioBackend) -> Result<(), VfioHostError> {
            let options = VfioOptions {
                path: self.device(),
                iommu: true,
                backend: Some(backend),
                nested: None,
            };
            check_host(&options, &self.dev()).map(|chosen| assert_eq!(chosen, backend))
        }
    }

    impl Drop for FakeHost {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    #[test]
    fn a_ready_device_passes_for_both_back_ends() {
        let host = FakeHost::ready();
        assert_eq!(host.check(VfioBackend::Container), Ok(()));
        assert_eq!(host.check(VfioBackend::Iommufd), Ok(()));
    }

    #[test]
    fn without_a_choice_iommufd_is_taken_where_the_host_has_it() {
        let host = FakeHost::ready();
        let auto = VfioOptions {
            path: host.device(),
            iommu: false,
            backend: None,
            nested: None,
        };
        assert_eq!(check_host(&auto, &host.dev()), Ok(VfioBackend::Iommufd));
        fs::remove_file(host.root.join("dev/iommu")).unwrap();
        assert_eq!(check_host(&auto, &host.dev()), Ok(VfioBackend::Container));
        fs::write(host.root.join("dev/iommu"), b"").unwrap();
        fs::remove_dir_all(host.device().join("vfio-dev")).unwrap();
        assert_eq!(check_host(&auto, &host.dev()), Ok(VfioBackend::Container));
    }

    #[test]
    fn nested_needs_the_virtio_iommu_and_iommufd() {
        let host = FakeHost::ready();
        let nested = |iommu, backend| VfioOptions {
            path: host.device(),
            iommu,
            backend,
            nested: Some(crate::vfio_options::NestedPolicy::Require),
        };
        assert_eq!(
            check_host(&nested(true, None), &host.dev()),
            Ok(VfioBackend::Iommufd)
        );
        let err = check_host(&nested(false, None), &host.dev()).unwrap_err();
        assert!(matches!(err, VfioHostError::NestedNeedsIommu { .. }));
        assert!(err.to_string().contains("iommu=on"), "{err}");
        let err = check_host(&nested(true, Some(VfioBackend::Container)), &host.dev()).unwrap_err();
        assert!(err.to_string().contains("drop backend=container"), "{err}");
        fs::remove_file(host.root.join("dev/iommu")).unwrap();
        let err = check_host(&nested(true, None), &host.dev()).unwrap_err();
        assert!(err.to_string().contains("no /dev/iommu"), "{err}");
    }

    #[test]
    fn a_missing_path_is_named() {
        let host = FakeHost::ready();
        let options = VfioOptions {
            path: host.root.join("sys/devices/0000:09:00.0"),
            iommu: false,
            backend: Some(VfioBackend::Container),
            nested: None,
        };
        let err = check_host(&options, &host.dev()).unwrap_err();
        assert!(matches!(err, VfioHostError::NoDevice { .. }));
        assert!(err.to_string().contains("lspci -D"));
    }

    #[test]
    fn a_device_on_another_driver_or_none_is_refused() {
        let host = FakeHost::ready();
        host.bind(BDF, Some("nvme"));
        let err = host.check(VfioBackend::Container).unwrap_err();
        assert_eq!(
            err,
            VfioHostError::NotVfioPci {
                bdf: BDF.into(),
                driver: "nvme".into()
            }
        );
        assert!(err.to_string().contains("bound to nvme, not vfio-pci"));
        host.bind(BDF, None);
        assert_eq!(
            host.check(VfioBackend::Container),
            Err(VfioHostError::Unbound { bdf: BDF.into() })
        );
    }

    #[test]
    fn no_iommu_group_means_no_host_iommu() {
        let host = FakeHost::ready();
        fs::remove_file(host.device().join("iommu_group")).unwrap();
        assert_eq!(
            host.check(VfioBackend::Container),
            Err(VfioHostError::NoIommuGroup { bdf: BDF.into() })
        );
    }

    #[test]
    fn every_group_member_must_be_vfio_friendly() {
        let host = FakeHost::ready();
        host.add_device(SIBLING, Some("nvme"));
        let err = host.check(VfioBackend::Container).unwrap_err();
        assert_eq!(
            err,
            VfioHostError::GroupMemberNotVfio {
                bdf: BDF.into(),
                other: SIBLING.into(),
                group: GROUP.into(),
                driver: "nvme".into(),
            }
        );
        for fine in [Some("vfio-pci"), Some("pci-stub"), None] {
            host.bind(SIBLING, fine);
            assert_eq!(host.check(VfioBackend::Container), Ok(()), "{fine:?}");
        }
    }

    #[test]
    fn absent_device_nodes_say_which_module_to_load() {
        let host = FakeHost::ready();
        fs::remove_file(host.root.join("dev/vfio/7")).unwrap();
        let err = host.check(VfioBackend::Container).unwrap_err();
        assert!(
            matches!(&err, VfioHostError::NodeAbsent { node, .. } if node.ends_with("vfio/7")),
            "{err}"
        );
        assert!(err.to_string().contains("modprobe vfio-pci"));

        fs::remove_file(host.root.join("dev/iommu")).unwrap();
        let err = host.check(VfioBackend::Iommufd).unwrap_err();
        assert!(err.to_string().contains("modprobe iommufd"), "{err}");

        fs::remove_dir_all(host.device().join("vfio-dev")).unwrap();
        let err = host.check(VfioBackend::Iommufd).unwrap_err();
        assert!(err.to_string().contains("use backend=container"), "{err}");
    }

    #[test]
    fn open_failures_are_told_apart() {
        let node = Path::new("/dev/vfio/7");
        let e = |errno| open_error(BDF, node, &io::Error::from_raw_os_error(errno));
        assert!(matches!(
            e(libc::EACCES),
            VfioHostError::PermissionDenied { .. }
        ));
        assert!(e(libc::EACCES).to_string().contains("run nestor as root"));
        assert!(matches!(e(libc::EBUSY), VfioHostError::Busy { .. }));
        assert!(matches!(e(libc::ENODEV), VfioHostError::Open { .. }));
    }

    #[test]
    fn every_message_is_one_line() {
        let host = FakeHost::ready();
        host.bind(BDF, Some("nvme"));
        let err = host.check(VfioBackend::Container).unwrap_err();
        assert_eq!(err.to_string().lines().count(), 1);
    }
}
