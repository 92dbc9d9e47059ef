//! GET /metrics: the counters nestor keeps, as JSON or in the Prometheus text format.

use std::fmt::Write as _;

use devices::virtio::block::BlockCounts;
use serde_json::json;

use super::routes::ApiVm;

/// The counters at one moment, so both formats say the same.
pub struct Snapshot {
    uptime_ms: u64,
    /// Per vCPU, each exit kind's name and count.
    vcpu_exits: Vec<Vec<(&'static str, u64)>>,
    /// The virtio-iommu's fault records, when there is one.
    iommu_faults: Option<[(&'static str, u64); 4]>,
    /// Each disk's BDF and counts, in `--disk` order.
    disks: Vec<(String, BlockCounts)>,
}

/// A disk's counters by name, in one order for both formats.
fn disk_counts(counts: &BlockCounts) -> [(&'static str, u64); 4] {
    [
        ("requests", counts.requests),
        ("read_bytes", counts.read_bytes),
        ("written_bytes", counts.written_bytes),
        ("errors", counts.errors),
    ]
}

impl Snapshot {
    pub fn take(vm: &ApiVm) -> Self {
        Self {
            uptime_ms: vm.control.started().elapsed().as_millis() as u64,
            vcpu_exits: vm.exit_counters.snapshot(),
            iommu_faults: vm.iommu_faults.as_ref().map(|source| {
                let c = source.counters();
                [
                    ("reported", c.reported),
                    ("delivered", c.delivered),
                    ("rate_limited", c.rate_limited),
                    ("overflowed", c.overflowed),
                ]
            }),
            disks: vm
                .disks
                .iter()
                .map(|(bdf, counters)| (bdf.to_string(), counters.snapshot()))
                .collect(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let vcpus: Vec<_> = self
            .vcpu_exits
            .iter()
            .enumerate()
            .map(|(index, exits)| {
                let exits: serde_json::Map<_, _> = exits
                    .iter()
                    .map(|(kind, count)| (kind.to_string(), json!(count)))
                    .collect();
                json!({ "vcpu": index, "exits": exits })
            })
            .collect();
        let faults = self.iommu_faults.map(|counters| {
            counters
                .iter()
                .map(|(name, count)| (name.to_string(), json!(count)))
                .collect::<serde_json::Map<_, _>>()
        });
        let disks: Vec<_> = self
            .disks
            .iter()
            .enumerate()
            .map(|(index, (bdf, counts))| {
                let mut disk = json!({ "disk": index, "bdf": bdf });
                for (name, count) in disk_counts(counts) {
                    disk[name] = json!(count);
                }
                disk
            })
            .collect();
        json!({
            "uptime_ms": self.uptime_ms,
            "vcpus": vcpus,
            "disks": disks,
            "iommu_faults": faults,
        })
    }

    pub fn prometheus(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# HELP nestor_uptime_ms Milliseconds since nestor started."
        );
        let _ = writeln!(text, "# TYPE nestor_uptime_ms gauge");
        let _ = writeln!(text, "nestor_uptime_ms {}", self.uptime_ms);
        let _ = writeln!(
            text,
            "# HELP nestor_vcpu_exits_total vCPU exits to nestor, by kind."
        );
        let _ = writeln!(text, "# TYPE nestor_vcpu_exits_total counter");
        for (index, exits) in self.vcpu_exits.iter().enumerate() {
            for (kind, count) in exits {
                let _ = writeln!(
                    text,
                    "nestor_vcpu_exits_total{{vcpu=\"{index}\",kind=\"{kind}\"}} {count}"
                );
            }
        }
        for (name, help) in [
            ("requests", "requests answered"),
            ("read_bytes", "bytes read from the image"),
            ("written_bytes", "bytes written to the image"),
            ("errors", "requests answered with an error or not at all"),
        ] {
            if self.disks.is_empty() {
                break;
            }
            let metric = format!("nestor_virtio_blk_{name}_total");
            let _ = writeln!(text, "# HELP {metric} virtio-blk {help}.");
            let _ = writeln!(text, "# TYPE {metric} counter");
            for (index, (bdf, counts)) in self.disks.iter().enumerate() {
                let count = disk_counts(counts)
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, c)| *c);
                let _ = writeln!(text, "{metric}{{disk=\"{index}\",bdf=\"{bdf}\"}} {count}");
            }
        }
        if let Some(counters) = self.iommu_faults {
            let _ = writeln!(
                text,
                "# HELP nestor_iommu_faults_total virtio-iommu fault records, by outcome."
            );
            let _ = writeln!(text, "# TYPE nestor_iommu_faults_total counter");
            for (outcome, count) in counters {
                let _ = writeln!(
                    text,
                    "nestor_iommu_faults_total{{outcome=\"{outcome}\"}} {count}"
                );
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_carry_the_same_counters() {
        let snapshot = Snapshot {
            uptime_ms: 42,
            vcpu_exits: vec![vec![("io-out", 3), ("mmio-read", 0)], vec![("io-out", 1)]],
            iommu_faults: Some([
                ("reported", 2),
                ("delivered", 1),
                ("rate_limited", 1),
                ("overflowed", 0),
            ]),
            disks: vec![(
                "00:01.0".into(),
                BlockCounts {
                    requests: 4,
                    read_bytes: 512,
                    written_bytes: 1024,
                    errors: 1,
                },
            )],
        };
        let json = snapshot.json();
        assert_eq!(json["uptime_ms"], 42);
        assert_eq!(json["vcpus"][0]["exits"]["io-out"], 3);
        assert_eq!(json["vcpus"][1]["exits"]["io-out"], 1);
        assert_eq!(json["iommu_faults"]["rate_limited"], 1);
        assert_eq!(json["disks"][0]["written_bytes"], 1024);
        assert_eq!(json["disks"][0]["bdf"], "00:01.0");
        let text = snapshot.prometheus();
        assert!(text.contains("nestor_uptime_ms 42\n"), "{text}");
        assert!(
            text.contains("nestor_vcpu_exits_total{vcpu=\"0\",kind=\"io-out\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("nestor_iommu_faults_total{outcome=\"delivered\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("nestor_virtio_blk_errors_total{disk=\"0\",bdf=\"00:01.0\"} 1\n"),
            "{text}"
        );
    }
}
