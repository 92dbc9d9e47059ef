//! `--vfio`: a host PCI device to pass through.

use std::path::PathBuf;

use crate::viommu::parse_on_off;

/// Which host interface the device's DMA mappings go through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum VfioBackend {
    /// The legacy VFIO group and type1 container (/dev/vfio/vfio, /dev/vfio/GROUP).
    #[default]
    Container,
    /// The device's VFIO cdev (/dev/vfio/devices/vfioN) bound to /dev/iommu.
    Iommufd,
}

/// `--vfio path=/sys/bus/pci/devices/BDF[,iommu=on|off][,backend=container|iommufd]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfioOptions {
    /// The device's sysfs directory.
    pub path: PathBuf,
    /// Behind the virtio-iommu rather than with all guest RAM mapped.
    pub iommu: bool,
    /// As given; `None` lets the host decide (iommufd where it can, see
    /// `vfio_host_checks::default_backend`), which the VM config does before anything opens.
    pub backend: Option<VfioBackend>,
}

impl VfioOptions {
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut path = None;
        let mut iommu = false;
        let mut backend = None;
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
                _ => {
                    return Err(format!(
                        "unknown --vfio option '{item}' (want path=/sys/bus/pci/devices/BDF, \
                         iommu=on|off, backend=container|iommufd)"
                    ))
                }
            }
        }
        let path = path.ok_or("--vfio needs path=/sys/bus/pci/devices/BDF")?;
        Ok(Self {
            path,
            iommu,
            backend,
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
            })
        );
    }

    #[test]
    fn every_option_in_any_order() {
        let v = VfioOptions::parse("backend=iommufd,iommu=on,path=/sys/bus/pci/devices/x").unwrap();
        assert!(v.iommu);
        assert_eq!(v.backend, Some(VfioBackend::Iommufd));
        assert_eq!(v.bdf(), "x");
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
        let e = VfioOptions::parse("path=p,backend=type1").unwrap_err();
        assert!(e.contains("container or iommufd"), "{e}");
        assert!(VfioOptions::parse("path=p,rombar=off").is_err());
    }
}
