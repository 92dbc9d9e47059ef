//! `--disk`, `--rng`, `--console` and `--dma-engine`: the emulated devices on the command
//! line.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::viommu::parse_on_off;

/// `--disk path=FILE[,readonly=on|off][,iommu=on|off]`; in a config file
/// `{"path": FILE, "readonly": BOOL, "iommu": BOOL}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskOptions {
    pub path: PathBuf,
    #[serde(rename = "readonly", default)]
    pub read_only: bool,
    #[serde(default)]
    pub iommu: bool,
}

impl DiskOptions {
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut path = None;
        let mut read_only = false;
        let mut iommu = false;
        for item in value.split(',') {
            match item.split_once('=') {
                Some(("path", p)) if !p.is_empty() => path = Some(PathBuf::from(p)),
                Some(("readonly", v)) => read_only = parse_on_off(v)?,
                Some(("iommu", v)) => iommu = parse_on_off(v)?,
                _ => {
                    return Err(format!(
                        "unknown --disk option '{item}' (want path=FILE, readonly=on|off, iommu=on|off)"
                    ))
                }
            }
        }
        let path = path.ok_or("--disk needs path=FILE")?;
        Ok(Self {
            path,
            read_only,
            iommu,
        })
    }
}

/// `--rng` or `--rng iommu=on|off`; in a config file `{"iommu": BOOL}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RngOptions {
    #[serde(default)]
    pub iommu: bool,
}

impl RngOptions {
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut options = Self::default();
        for item in value.split(',').filter(|s| !s.is_empty()) {
            match item.split_once('=') {
                Some(("iommu", v)) => options.iommu = parse_on_off(v)?,
                _ => return Err(format!("unknown --rng option '{item}' (want iommu=on|off)")),
            }
        }
        Ok(options)
    }
}

/// How the DMA engine's accesses are translated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DmaEngineIommu {
    /// Guest-physical addresses.
    #[default]
    Off,
    /// Behind the virtio-iommu, in whatever domain the guest attaches it to.
    On,
    /// Behind the virtio-iommu in nested mode: jobs may carry a PASID, and a table-mode
    /// domain translates them through the guest's stage-1 tables.
    Nested,
}

impl DmaEngineIommu {
    fn parse(value: &str) -> Result<Self, String> {
        match value {
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            "nested" => Ok(Self::Nested),
            _ => Err(format!("'{value}' is neither on, off nor nested")),
        }
    }

    /// Whether the engine sits behind the virtio-iommu.
    pub fn is_translated(self) -> bool {
        self != Self::Off
    }
}

/// In a config file: `true`, `false` or `"nested"` (`"on"` and `"off"` too).
impl Serialize for DmaEngineIommu {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Off => serializer.serialize_bool(false),
            Self::On => serializer.serialize_bool(true),
            Self::Nested => serializer.serialize_str("nested"),
        }
    }
}

impl<'de> Deserialize<'de> for DmaEngineIommu {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Value {
            Bool(bool),
            Text(String),
        }
        match Value::deserialize(deserializer) {
            Ok(Value::Bool(on)) => Ok(if on { Self::On } else { Self::Off }),
            Ok(Value::Text(text)) => Self::parse(&text).map_err(serde::de::Error::custom),
            Err(_) => Err(serde::de::Error::custom(
                "expected true, false or \"nested\"",
            )),
        }
    }
}

/// `--dma-engine` or `--dma-engine iommu=on|off|nested`; in a config file
/// `{"iommu": BOOL or "nested"}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmaEngineOptions {
    #[serde(default)]
    pub iommu: DmaEngineIommu,
}

impl DmaEngineOptions {
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut options = Self::default();
        for item in value.split(',').filter(|s| !s.is_empty()) {
            match item.split_once('=') {
                Some(("iommu", v)) => options.iommu = DmaEngineIommu::parse(v)?,
                _ => {
                    return Err(format!(
                        "unknown --dma-engine option '{item}' (want iommu=on|off|nested)"
                    ))
                }
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_options() {
        assert_eq!(
            DiskOptions::parse("path=/tmp/a.img"),
            Ok(DiskOptions {
                path: "/tmp/a.img".into(),
                read_only: false,
                iommu: false
            })
        );
        let d = DiskOptions::parse("path=x,readonly=on,iommu=on").unwrap();
        assert!(d.read_only && d.iommu);
        assert!(DiskOptions::parse("readonly=on").is_err());
        assert!(DiskOptions::parse("path=").is_err());
        assert!(DiskOptions::parse("path=x,readonly=yes").is_err());
        assert!(DiskOptions::parse("path=x,cache=none").is_err());
    }

    #[test]
    fn rng_options() {
        assert_eq!(RngOptions::parse(""), Ok(RngOptions { iommu: false }));
        assert_eq!(
            RngOptions::parse("iommu=on"),
            Ok(RngOptions { iommu: true })
        );
        assert!(RngOptions::parse("iommu").is_err());
    }

    #[test]
    fn dma_engine_options() {
        assert_eq!(
            DmaEngineOptions::parse(""),
            Ok(DmaEngineOptions {
                iommu: DmaEngineIommu::Off
            })
        );
        assert_eq!(
            DmaEngineOptions::parse("iommu=on"),
            Ok(DmaEngineOptions {
                iommu: DmaEngineIommu::On
            })
        );
        assert_eq!(
            DmaEngineOptions::parse("iommu=off"),
            Ok(DmaEngineOptions {
                iommu: DmaEngineIommu::Off
            })
        );
        assert_eq!(
            DmaEngineOptions::parse("iommu=nested"),
            Ok(DmaEngineOptions {
                iommu: DmaEngineIommu::Nested
            })
        );
        assert!(DmaEngineOptions::parse("iommu").is_err());
        assert!(DmaEngineOptions::parse("pasid=on").is_err());
    }
}
