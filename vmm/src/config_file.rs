//! `run --config FILE`: the VM as one JSON document, the same [`RunArgs`] the flags fill,
//! with the fields spelled as the flags are (docs/config-file.md).
//!
//! Values that are strings on the command line (sizes, serial and seccomp modes) are the
//! same strings in the file, so a user moves between the two by copying text.

use std::path::{Path, PathBuf};

use crate::cli::RunArgs;
use crate::config::SerialMode;
use crate::seccomp::SeccompMode;

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("--config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Reads and checks `path`: a JSON object whose fields are `run`'s options.
pub fn load(path: &Path) -> Result<RunArgs, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.into(),
        source,
    })?;
    parse(&text).map_err(|message| ConfigFileError::Invalid {
        path: path.into(),
        message,
    })
}

/// The options `text` describes, or what is wrong with it, on one line, naming the field.
pub fn parse(text: &str) -> Result<RunArgs, String> {
    // serde would also take the fields in order as an array; a VM is described by name.
    if !text.trim_start().starts_with('{') {
        return Err("expected one JSON object, like {\"memory\": \"256M\"}".into());
    }
    let mut json = serde_json::Deserializer::from_str(text);
    let args: RunArgs = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        match e.path().to_string().as_str() {
            "." => e.inner().to_string(),
            field => format!("{field}: {}", e.inner()),
        }
    })?;
    json.end().map_err(|e| e.to_string())?;
    Ok(args)
}

/// The document `args` would be in a file.
pub fn to_json(args: &RunArgs) -> String {
    // Serializing plain data into a string cannot fail.
    serde_json::to_string_pretty(args).unwrap_or_default()
}

/// A value written as its command-line spelling (`"stdio"`, `"file=PATH"`, `"on"`).
pub trait FlagValue: Sized {
    fn parse_flag(text: &str) -> Result<Self, String>;
    fn flag(&self) -> String;
}

impl FlagValue for SerialMode {
    fn parse_flag(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
    fn flag(&self) -> String {
        match self {
            Self::Stdio => "stdio".into(),
            Self::Off => "off".into(),
            Self::File(path) => format!("file={}", path.display()),
        }
    }
}

impl FlagValue for SeccompMode {
    fn parse_flag(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
    fn flag(&self) -> String {
        match self {
            Self::On => "on",
            Self::Log => "log",
            Self::Off => "off",
        }
        .into()
    }
}

pub mod as_flag {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::FlagValue;

    pub fn serialize<S: Serializer, T: FlagValue>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.flag())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: FlagValue>(d: D) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        T::parse_flag(&text).map_err(serde::de::Error::custom)
    }
}

/// A size: a string as `--memory` takes it ("256M", "2G"), or a number of MiB.
pub mod memory_size {
    use serde::{Deserializer, Serializer};

    use crate::config::parse_memory_size;

    /// In the largest unit that divides it; sizes are whole KiB (parse_memory_size makes
    /// nothing finer).
    pub fn serialize<S: Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
        let (shift, unit) = [(40, "T"), (30, "G"), (20, "M")]
            .into_iter()
            .find(|&(shift, _)| *bytes != 0 && bytes.is_multiple_of(1u64 << shift))
            .unwrap_or((10, "K"));
        s.serialize_str(&format!("{}{unit}", bytes >> shift))
    }

    struct Size;

    impl serde::de::Visitor<'_> for Size {
        type Value = u64;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a size like \"256M\" or \"2G\", or a number of MiB")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<u64, E> {
            parse_memory_size(text).map_err(E::custom)
        }

        fn visit_u64<E: serde::de::Error>(self, mib: u64) -> Result<u64, E> {
            parse_memory_size(&mib.to_string()).map_err(E::custom)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(Size)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn run_args(flags: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(["nestor", "run"].iter().chain(flags)).unwrap();
        match cli.command {
            Command::Run(args) | Command::Config(args) => args,
        }
    }

    #[test]
    fn an_empty_document_is_run_without_options() {
        assert_eq!(parse("{}").unwrap(), run_args(&[]));
        assert_eq!(RunArgs::default(), run_args(&[]));
    }

    #[test]
    fn every_option_survives_the_file() {
        let args = run_args(&[
            "--kernel=/k",
            "--initrd=/i",
            "--cmdline=console=ttyS0 quiet",
            "--memory=1536M",
            "--cpus=3",
            "--serial=file=/tmp/serial.log",
            "--seccomp=log",
            "--boot-timer",
            "--pit",
            "--nested",
            "--timeout=9",
            "--disk=path=/a,readonly=on",
            "--disk=path=/b,iommu=on",
            "--rng=iommu=on",
            "--console",
            "--viommu=bypass=on",
            "--vfio=path=/sys/bus/pci/devices/0000:01:00.0,iommu=on,backend=container",
            "--vfio=path=/sys/bus/pci/devices/0000:02:00.0",
            "--dma-engine=iommu=on",
        ]);
        let text = to_json(&args);
        assert_eq!(parse(&text).unwrap(), args);
        assert!(text.contains(r#""memory": "1536M""#), "{text}");
        assert!(text.contains(r#""boot-timer": true"#), "{text}");
    }

    #[test]
    fn the_dma_engine_in_nested_mode_round_trips_and_takes_booleans_too() {
        use crate::device_options::DmaEngineIommu;
        let args = run_args(&["--dma-engine=iommu=nested"]);
        let text = to_json(&args);
        assert!(text.contains(r#""iommu": "nested""#), "{text}");
        assert_eq!(parse(&text).unwrap(), args);
        let engine = |text| parse(text).map(|c| c.dma_engine.map(|d| d.iommu));
        assert_eq!(
            engine(r#"{"dma-engine": {"iommu": true}}"#),
            Ok(Some(DmaEngineIommu::On))
        );
        assert_eq!(
            engine(r#"{"dma-engine": {"iommu": "nested"}}"#),
            Ok(Some(DmaEngineIommu::Nested))
        );
        let e = engine(r#"{"dma-engine": {"iommu": "deep"}}"#).unwrap_err();
        assert!(e.starts_with("dma-engine.iommu: "), "{e}");
        let e = engine(r#"{"dma-engine": {"iommu": 3}}"#).unwrap_err();
        assert!(e.starts_with("dma-engine.iommu: "), "{e}");
    }

    #[test]
    fn sizes_are_strings_as_on_the_command_line_or_mib() {
        assert_eq!(parse(r#"{"memory": "2G"}"#).unwrap().memory, 2 << 30);
        assert_eq!(parse(r#"{"memory": 300}"#).unwrap().memory, 300 << 20);
        assert_eq!(parse(r#"{"memory": "512k"}"#).unwrap().memory, 512 << 10);
        let e = parse(r#"{"memory": "lots"}"#).unwrap_err();
        assert!(e.starts_with("memory: "), "{e}");
        let e = parse(r#"{"memory": -1}"#).unwrap_err();
        assert!(e.starts_with("memory: "), "{e}");
    }

    #[test]
    fn mistakes_name_their_field() {
        for (text, field) in [
            (r#"{"cpus": "two"}"#, "cpus: "),
            (r#"{"rng": {"iommu": true, "speed": 1}}"#, "rng.speed: "),
            (r#"{"disk": [{"readonly": true}]}"#, "disk[0]: "),
            (r#"{"serial": "tty"}"#, "serial: "),
            (r#"{"config": "/x"}"#, "config: "),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(field), "{text}: {e}");
            assert_eq!(e.lines().count(), 1);
        }
        assert!(parse("[]").is_err());
        assert!(parse(r#"{} {}"#).is_err());
    }
}
