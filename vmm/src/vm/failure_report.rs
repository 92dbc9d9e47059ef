//! What nestor prints after `guest failed`: each vCPU's registers and last exits and, with
//! -v, where the devices' interrupts go. Gathered once every vCPU has stopped.

use devices::interrupt::MsiMessage;
use devices::pci::{MsixSnapshot, SharedMsix};

use crate::interrupts::{DecodedMsi, KvmInterrupts};
use crate::vcpu::{VcpuReport, RECORDED_EXITS};

/// Exits shown per vCPU without -v: the ones just before the end are what matter most.
const EXITS_SHOWN: usize = 8;

/// The interrupt state at the VM's end; `None` where a table was being changed.
pub struct InterruptTables {
    routes: Option<Vec<(u32, MsiMessage)>>,
    msix: Vec<(String, Option<MsixSnapshot>)>,
}

impl InterruptTables {
    /// Copies the tables without waiting for any lock: a device thread that is stuck while
    /// holding one must not keep nestor from exiting.
    pub fn gather(interrupts: &KvmInterrupts, msix_tables: &[(String, SharedMsix)]) -> Self {
        Self {
            routes: interrupts.msi_routes(),
            msix: msix_tables
                .iter()
                .map(|(name, state)| {
                    let snapshot = state.try_lock().ok().map(|state| state.snapshot());
                    (name.clone(), snapshot)
                })
                .collect(),
        }
    }

    fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        match &self.routes {
            None => lines.push("nestor: msi routes: being changed, not shown".to_string()),
            Some(routes) if routes.is_empty() => lines.push("nestor: msi routes: none".into()),
            Some(routes) => lines.extend(routes.iter().map(|&(gsi, message)| {
                format!("nestor: msi route gsi={gsi} {}", describe_message(message))
            })),
        }
        for (name, snapshot) in &self.msix {
            let Some(msix) = snapshot else {
                lines.push(format!("nestor: msix {name}: being changed, not shown"));
                continue;
            };
            lines.push(format!(
                "nestor: msix {name}: enabled={} function-masked={} vectors={}",
                msix.enabled,
                msix.function_masked,
                msix.entries.len()
            ));
            lines.extend(msix.entries.iter().enumerate().map(|(vector, entry)| {
                format!(
                    "nestor: msix {name} vector {vector}: {} masked={} pending={}",
                    describe_message(entry.message),
                    entry.masked,
                    entry.pending
                )
            }));
        }
        lines
    }
}

fn describe_message(message: MsiMessage) -> String {
    // An entry the guest never wrote: decoding it would only say it points nowhere.
    if message == MsiMessage::default() {
        return "address=0x0 data=0x0 (not programmed)".to_string();
    }
    format!(
        "address={:#x} data={:#x} {}",
        message.address,
        message.data,
        DecodedMsi::new(message)
    )
}

/// Every line of the report, in order: vCPU by vCPU, then the interrupt tables if given.
/// Exit times are relative to the VM's end: when the first vCPU left the guest, which is
/// the one that failed.
pub fn lines(
    vcpus: &[VcpuReport],
    verbose: bool,
    interrupts: Option<&InterruptTables>,
) -> Vec<String> {
    let end = vcpus.iter().map(|r| r.left_guest).min().unwrap_or_default();
    let (shown, hint) = if verbose {
        (RECORDED_EXITS, String::new())
    } else {
        (
            EXITS_SHOWN,
            format!("; -v shows {RECORDED_EXITS} exits per vCPU and the interrupt routes"),
        )
    };
    let mut lines = Vec::new();
    if !vcpus.is_empty() {
        lines.push(format!(
            "nestor: guest state when the VM ended, {:.3}ms after start (exit times are \
             relative to it{hint})",
            end.as_secs_f64() * 1e3,
        ));
    }
    for vcpu in vcpus {
        lines.extend(vcpu.state_lines());
        lines.extend(vcpu.exit_lines(end, shown));
    }
    if let Some(tables) = interrupts {
        lines.extend(tables.lines());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::pci::MsixEntryView;

    #[test]
    fn interrupt_tables_decode_routes_and_show_msix_entries() {
        let message = MsiMessage {
            address: 0xfee0_1000,
            data: 0x4031,
        };
        let tables = InterruptTables {
            routes: Some(vec![(24, message)]),
            msix: vec![
                (
                    "00:01.0 virtio-blk".into(),
                    Some(MsixSnapshot {
                        enabled: true,
                        function_masked: false,
                        entries: vec![MsixEntryView {
                            message,
                            masked: false,
                            pending: true,
                        }],
                    }),
                ),
                (
                    "00:02.0 virtio-rng".into(),
                    Some(MsixSnapshot {
                        enabled: false,
                        function_masked: true,
                        entries: vec![MsixEntryView {
                            message: MsiMessage::default(),
                            masked: true,
                            pending: false,
                        }],
                    }),
                ),
                ("00:03.0 virtio-console".into(), None),
            ],
        };
        assert_eq!(
            tables.lines(),
            [
                "nestor: msi route gsi=24 address=0xfee01000 data=0x4031 dest=0x1 (physical) \
                 vector=0x31 delivery=fixed trigger=edge",
                "nestor: msix 00:01.0 virtio-blk: enabled=true function-masked=false vectors=1",
                "nestor: msix 00:01.0 virtio-blk vector 0: address=0xfee01000 data=0x4031 \
                 dest=0x1 (physical) vector=0x31 delivery=fixed trigger=edge masked=false \
                 pending=true",
                "nestor: msix 00:02.0 virtio-rng: enabled=false function-masked=true vectors=1",
                "nestor: msix 00:02.0 virtio-rng vector 0: address=0x0 data=0x0 (not programmed) \
                 masked=true pending=false",
                "nestor: msix 00:03.0 virtio-console: being changed, not shown",
            ]
        );
    }

    #[test]
    fn no_routes_and_a_busy_routing_table_are_said_so() {
        let busy = InterruptTables {
            routes: None,
            msix: Vec::new(),
        };
        assert_eq!(
            busy.lines(),
            ["nestor: msi routes: being changed, not shown"]
        );
        let empty = InterruptTables {
            routes: Some(Vec::new()),
            msix: Vec::new(),
        };
        assert_eq!(empty.lines(), ["nestor: msi routes: none"]);
    }
}
