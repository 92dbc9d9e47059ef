//! GET /metrics: the counters nestor keeps, as JSON or in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::Arc;

use devices::io_counters::{IoCounters, IoCounts};
use devices::pci::Bdf;
use devices::virtio::iommu::request_counters::{KINDS, STATUSES};
use devices::virtio::iommu::{FaultCounters, RequestCounts};
use serde_json::{json, Map, Value};

use super::routes::ApiVm;

/// A device's counters, for the metrics.
#[derive(Clone)]
pub struct CountedDevice {
    /// `virtio-blk`, `virtio-rng`, `virtio-console`, `vfio`, `dma-engine`.
    pub kind: &'static str,
    pub bdf: Bdf,
    pub counters: Arc<IoCounters>,
}

/// The virtio-iommu's counters at one moment.
struct IommuSnapshot {
    requests: RequestCounts,
    /// Each domain's id and mapping count.
    mappings: Vec<(u32, usize)>,
    faults: FaultCounters,
}

/// The counters at one moment, so both formats say the same.
pub struct Snapshot {
    uptime_ms: u64,
    /// Per vCPU, each exit kind's name and count.
    vcpu_exits: Vec<Vec<(&'static str, u64)>>,
    /// Each device's kind, BDF and counts, in BDF order.
    devices: Vec<(&'static str, String, IoCounts)>,
    iommu: Option<IommuSnapshot>,
}

/// A device's counters by name, in one order for both formats, with their help text.
fn device_counts(counts: &IoCounts) -> [(&'static str, u64, &'static str); 4] {
    [
        ("requests", counts.requests, "requests served"),
        (
            "read_bytes",
            counts.read_bytes,
            "bytes read (from a disk image, given to the guest, read by a job or from a BAR)",
        ),
        (
            "written_bytes",
            counts.written_bytes,
            "bytes written (to a disk image, sent by the guest, written by a job or to a BAR)",
        ),
        (
            "errors",
            counts.errors,
            "requests answered with an error or not at all",
        ),
    ]
}

fn fault_counts(faults: &FaultCounters) -> [(&'static str, u64); 4] {
    [
        ("reported", faults.reported),
        ("delivered", faults.delivered),
        ("rate_limited", faults.rate_limited),
        ("overflowed", faults.overflowed),
    ]
}

fn named(names: &[&str], counts: &[u64]) -> Value {
    Value::Object(
        names
            .iter()
            .zip(counts)
            .map(|(name, count)| (name.to_string(), json!(count)))
            .collect(),
    )
}

/// One Prometheus metric: its HELP and TYPE lines, then a sample per label set.
fn metric(text: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(text, "# HELP {name} {help}");
    let _ = writeln!(text, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(text, "{name} {value}");
        } else {
            let _ = writeln!(text, "{name}{{{labels}}} {value}");
        }
    }
}

impl Snapshot {
    pub fn take(vm: &ApiVm) -> Self {
        Self {
            uptime_ms: vm.control.started().elapsed().as_millis() as u64,
            vcpu_exits: vm.exit_counters.snapshot(),
            devices: vm
                .devices
                .iter()
                .map(|d| (d.kind, d.bdf.to_string(), d.counters.snapshot()))
                .collect(),
            iommu: vm.iommu.as_ref().map(|source| IommuSnapshot {
                requests: source.requests(),
                mappings: source.mappings(),
                faults: source.faults(),
            }),
        }
    }

    pub fn json(&self) -> Value {
        let vcpus: Vec<_> = self
            .vcpu_exits
            .iter()
            .enumerate()
            .map(|(index, exits)| {
                let exits: Map<_, _> = exits
                    .iter()
                    .map(|(kind, count)| (kind.to_string(), json!(count)))
                    .collect();
                json!({ "vcpu": index, "exits": exits })
            })
            .collect();
        let devices: Vec<_> = self
            .devices
            .iter()
            .map(|(kind, bdf, counts)| {
                let mut device = json!({ "kind": kind, "bdf": bdf });
                for (name, count, _) in device_counts(counts) {
                    device[name] = json!(count);
                }
                device
            })
            .collect();
        let iommu = self.iommu.as_ref().map(|iommu| {
            let (names, counts): (Vec<_>, Vec<_>) = fault_counts(&iommu.faults).into_iter().unzip();
            let domains: Vec<_> = iommu
                .mappings
                .iter()
                .map(|(domain, mappings)| json!({ "domain": domain, "mappings": mappings }))
                .collect();
            json!({
                "requests": named(&KINDS, &iommu.requests.by_kind),
                "statuses": named(&STATUSES, &iommu.requests.by_status),
                "domains": domains,
                "faults": named(&names, &counts),
            })
        });
        json!({
            "uptime_ms": self.uptime_ms,
            "vcpus": vcpus,
            "devices": devices,
            "iommu": iommu,
        })
    }

    pub fn prometheus(&self) -> String {
        let mut text = String::new();
        metric(
            &mut text,
            "nestor_uptime_ms",
            "gauge",
            "Milliseconds since nestor started.",
            &[(String::new(), self.uptime_ms)],
        );
        let exits: Vec<_> = self
            .vcpu_exits
            .iter()
            .enumerate()
            .flat_map(|(index, exits)| {
                exits
                    .iter()
                    .map(move |(kind, count)| (format!("vcpu=\"{index}\",kind=\"{kind}\""), *count))
            })
            .collect();
        metric(
            &mut text,
            "nestor_vcpu_exits_total",
            "counter",
            "vCPU exits to nestor, by kind.",
            &exits,
        );
        if !self.devices.is_empty() {
            for (position, (name, _, help)) in
                device_counts(&IoCounts::default()).into_iter().enumerate()
            {
                let samples: Vec<_> = self
                    .devices
                    .iter()
                    .map(|(kind, bdf, counts)| {
                        let count = device_counts(counts)[position].1;
                        (format!("kind=\"{kind}\",bdf=\"{bdf}\""), count)
                    })
                    .collect();
                metric(
                    &mut text,
                    &format!("nestor_device_{name}_total"),
                    "counter",
                    &format!("Per device: {help}."),
                    &samples,
                );
            }
        }
        if let Some(iommu) = &self.iommu {
            let by = |label: &str, names: &[&str], counts: &[u64]| -> Vec<(String, u64)> {
                names
                    .iter()
                    .zip(counts)
                    .map(|(name, count)| (format!("{label}=\"{name}\""), *count))
                    .collect()
            };
            metric(
                &mut text,
                "nestor_iommu_requests_total",
                "counter",
                "virtio-iommu requests, by type.",
                &by("type", &KINDS, &iommu.requests.by_kind),
            );
            metric(
                &mut text,
                "nestor_iommu_request_statuses_total",
                "counter",
                "virtio-iommu requests, by the status they were answered with.",
                &by("status", &STATUSES, &iommu.requests.by_status),
            );
            let domains: Vec<_> = iommu
                .mappings
                .iter()
                .map(|(domain, mappings)| (format!("domain=\"{domain}\""), *mappings as u64))
                .collect();
            metric(
                &mut text,
                "nestor_iommu_domain_mappings",
                "gauge",
                "virtio-iommu mappings, per domain.",
                &domains,
            );
            let (names, counts): (Vec<_>, Vec<_>) = fault_counts(&iommu.faults).into_iter().unzip();
            metric(
                &mut text,
                "nestor_iommu_faults_total",
                "counter",
                "virtio-iommu fault records, by outcome.",
                &by("outcome", &names, &counts),
            );
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
            devices: vec![
                (
                    "virtio-blk",
                    "00:01.0".into(),
                    IoCounts {
                        requests: 4,
                        read_bytes: 512,
                        written_bytes: 1024,
                        errors: 1,
                    },
                ),
                (
                    "virtio-rng",
                    "00:02.0".into(),
                    IoCounts {
                        requests: 2,
                        read_bytes: 64,
                        ..IoCounts::default()
                    },
                ),
            ],
            iommu: Some(IommuSnapshot {
                requests: RequestCounts {
                    by_kind: [1, 0, 5, 2, 1, 0],
                    by_status: [8, 0, 0, 0, 0, 0, 1, 0, 0, 0],
                },
                mappings: vec![(1, 3), (9, 0)],
                faults: FaultCounters {
                    reported: 2,
                    delivered: 1,
                    rate_limited: 1,
                    overflowed: 0,
                },
            }),
        };
        let json = snapshot.json();
        assert_eq!(json["uptime_ms"], 42);
        assert_eq!(json["vcpus"][0]["exits"]["io-out"], 3);
        assert_eq!(json["vcpus"][1]["exits"]["io-out"], 1);
        assert_eq!(json["devices"][0]["kind"], "virtio-blk");
        assert_eq!(json["devices"][0]["written_bytes"], 1024);
        assert_eq!(json["devices"][0]["bdf"], "00:01.0");
        assert_eq!(json["devices"][1]["read_bytes"], 64);
        assert_eq!(json["iommu"]["requests"]["map"], 5);
        assert_eq!(json["iommu"]["statuses"]["noent"], 1);
        assert_eq!(json["iommu"]["domains"][0]["mappings"], 3);
        assert_eq!(json["iommu"]["domains"][1]["domain"], 9);
        assert_eq!(json["iommu"]["faults"]["rate_limited"], 1);
        let text = snapshot.prometheus();
        for line in [
            "nestor_uptime_ms 42\n",
            "nestor_vcpu_exits_total{vcpu=\"0\",kind=\"io-out\"} 3\n",
            "nestor_device_errors_total{kind=\"virtio-blk\",bdf=\"00:01.0\"} 1\n",
            "nestor_device_read_bytes_total{kind=\"virtio-rng\",bdf=\"00:02.0\"} 64\n",
            "nestor_iommu_requests_total{type=\"unmap\"} 2\n",
            "nestor_iommu_request_statuses_total{status=\"ok\"} 8\n",
            "nestor_iommu_domain_mappings{domain=\"1\"} 3\n",
            "nestor_iommu_faults_total{outcome=\"delivered\"} 1\n",
            "# TYPE nestor_iommu_domain_mappings gauge\n",
        ] {
            assert!(text.contains(line), "no {line:?} in {text}");
        }
        // Each metric's HELP and TYPE once.
        assert_eq!(
            text.matches("# TYPE nestor_device_requests_total").count(),
            1
        );
    }

    #[test]
    fn a_vm_without_devices_or_iommu_has_neither() {
        let snapshot = Snapshot {
            uptime_ms: 1,
            vcpu_exits: vec![vec![]],
            devices: vec![],
            iommu: None,
        };
        assert_eq!(snapshot.json()["devices"], json!([]));
        assert_eq!(snapshot.json()["iommu"], Value::Null);
        let text = snapshot.prometheus();
        assert!(!text.contains("nestor_device_"), "{text}");
        assert!(!text.contains("nestor_iommu_"), "{text}");
    }
}
