//! `--vfio`: a host PCI device to pass through.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::viommu::parse_on_off;

/// Which host interface the device's DMA mappings go through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VfioBackend {
    /// The legacy VFIO group and type1 container (/dev/vfio/vfio, /dev/vfio/GROUP).
    #[default]
    Container,
    /// The device's VFIO cdev (/dev/vfio/devices/vfioN) bound to /dev/iommu.
    Iommufd,
}

/// Whether the guest should own the device's stage 1 (nested translation: guest stage 1,
/// host stage 2) rather than map through the virtio-iommu's MAP and UNMAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NestedPolicy {
    /// Nested or nothing: a host IOMMU that cannot nest stops nestor.
    Require,
    /// Nested where the host IOMMU can; otherwise MAP and UNMAP, with a warning.
    Prefer,
}

/// `--vfio path=/sys/bus/pci/devices/BDF[,iommu=on|off][,backend=container|iommufd]
/// [,nested=require|prefer]`; in a config file `{"path": DIR, "iommu": BOOL, "backend":
/// "container" | "iommufd", "nested": "require" | "prefer"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VfioOptions {
    /// The device's sysfs directory.
    pub path: PathBuf,
    /// Behind the virtio-iommu rather than with all guest RAM mapped.
    #[serde(default)]
    pub iommu: bool,
    /// As given; `None` lets the host decide (iommufd where it can, see
    /// `vfio_host_checks::default_backend`), which the VM config does before anything opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<VfioBackend>,
    /// Nested translation through iommufd (needs `iommu` and the iommufd back-end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nested: Option<NestedPolicy>,
}

impl VfioOptions {
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut path = None;
        let mut iommu = false;
        let mut backend = None;
        let mut nested = None;
        for item in value.split(',') {
            match item.split_once('=') {
                Some(("path", p)) if !p.is_empty() => path = Some(PathBuf::from(p)),
                Some(("iommu", v)) => iommu = parse_on_off(v)?,
                Some(("backend", "container")) => backend = Some(VfioBackend::Container),
                Some(("backend", "iommufd")) => backend = Some(VfioBackend::Iommufd),
                Some(("backend", other)) => {
                    return Err(format!(
                        "unknown --vfio backend '{other}' (want container or iommufd)"
                    ))
                }
                Some(("nested", "require")) => nested = Some(NestedPolicy::Require),
                Some(("nested", "prefer")) => nested = Some(NestedPolicy::Prefer),
                Some(("nested", other)) => {
                    return Err(format!(
                        "unknown --vfio nested '{other}' (want require or prefer)"
                    ))
                }
                _ => {
                    return Err(format!(
                        "unknown --vfio option '{item}' (want path=/sys/bus/pci/devices/BDF, \
                         iommu=on|off, backend=container|iommufd, nested=require|prefer)"
                    ))
                }
            }
        }
        let path = path.ok_or("--vfio needs path=/sys/bus/pci/devices/BDF")?;
        Ok(Self {
            path,
            iommu,
            backend,
            nested,
        })
    }

    /// The device's PCI address (the last part of its path), for messages.
    pub fn bdf(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_alone_leaves_the_backend_to_the_host_and_the_iommu_off() {
        assert_eq!(
            VfioOptions::parse("path=/sys/bus/pci/devices/0000:01:00.0"),
            Ok(VfioOptions {
                path: "/sys/bus/pci/devices/0000:01:00.0".into(),
                iommu: false,
                backend: None,
                nested: None,
            })
        );
    }

    #[test]
    fn every_option_in_any_order() {
        let v = VfioOptions::parse("backend=iommufd,iommu=on,path=/sys/bus/pci/devices/x").unwrap();
        assert!(v.iommu);
        assert_eq!(v.backend, Some(VfioBackend::Iommufd));
        assert_eq!(v.bdf(), "x");
        let v = VfioOptions::parse("nested=prefer,path=p,iommu=on").unwrap();
        assert_eq!(v.nested, Some(NestedPolicy::Prefer));
        let v = VfioOptions::parse("path=p,nested=require").unwrap();
        assert_eq!(v.nested, Some(NestedPolicy::Require));
        let v = VfioOptions::parse("path=p,backend=container,iommu=off").unwrap();
        assert_eq!(v.backend, Some(VfioBackend::Container));
        assert!(!v.iommu);
    }

    #[test]
    fn mistakes_say_what_is_wanted() {
        assert!(VfioOptions::parse("iommu=on")
            .unwrap_err()
            .contains("path="));
        assert!(VfioOptions::parse("path=").is_err());
        assert!(VfioOptions::parse("").is_err());
        assert!(VfioOptions::parse("path=p,iommu=yes").is_err());
        let e = VfioOptions::parse("path=p,nested=maybe").unwrap_err();
        assert!(e.contains("require or prefer"), "{e}");
        let e = VfioOptions::parse("path=p,backend=type1").unwrap_err();
        assert!(e.contains("container or iommufd"), "{e}");
        assert!(VfioOptions::parse("path=p,rombar=off").is_err());
    }
}
