//! What each command does to the model's caches and waiting transactions. Commands take
//! effect as they are executed, so CMD_SYNC has nothing left to wait for: it only signals
//! completion (the MSI write Linux polls for when CS = IRQ).

use std::sync::atomic::Ordering;

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::pri_queue::PriResponse;
use super::state::State;
use super::tlb::TlbTag;
use super::wire::{opcode, Command};

/// A command's effect outside the model: on a device (its ATC, its page requests) or on a
/// stalled transaction's issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEffect {
    /// ATC_INV: the device's translations of `[start, last]` are stale (`ssid` None: of
    /// every substream).
    AtcInvalidate {
        sid: u32,
        ssid: Option<u32>,
        start: u64,
        last: u64,
    },
    /// PRI_RESP for a page request group.
    PageResponse {
        sid: u32,
        ssid: Option<u32>,
        group: u16,
        response: PriResponse,
    },
    /// RESUME or STALL_TERM answered a stalled transaction.
    StallResolved { sid: u32, stag: u16, retry: bool },
}

/// CERROR_ILL: the command (or a field of it) is not one this SMMU accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal SMMU command (opcode {opcode:#04x})")]
pub struct IllegalCommand {
    pub opcode: u8,
}

/// The inclusive range a TLBI's address, TG, NUM and SCALE name: with TG = 0 the one
/// address, otherwise (NUM + 1) * 2^SCALE granules from it.
fn tlbi_range(cmd: &Command) -> (u64, u64) {
    let start = cmd.address();
    match cmd.tg() {
        0 => (start, start),
        tg => {
            let granule_bits = 2 * u32::from(tg) + 10;
            let pages = (u64::from(cmd.num()) + 1) << cmd.scale();
            let len = pages.checked_shl(granule_bits).unwrap_or(u64::MAX);
            (start, start.saturating_add(len.saturating_sub(1)))
        }
    }
}

/// ATC_INV's range: 2^Size 4 KiB pages, aligned to their size.
fn atc_range(cmd: &Command) -> (u64, u64) {
    let size_bits = 12 + u32::from(cmd.atc_size());
    if size_bits >= 64 {
        return (0, u64::MAX);
    }
    let mask = (1u64 << size_bits) - 1;
    let start = cmd.address() & !mask;
    (start, start | mask)
}

impl State {
    pub(crate) fn execute<M: GuestMemory + ?Sized>(
        &mut self,
        memory: &M,
        cmd: Command,
        effects: &mut Vec<DeviceEffect>,
    ) -> Result<(), IllegalCommand> {
        let illegal = IllegalCommand {
            opcode: cmd.opcode(),
        };
        // Whatever the command, no translation cached in front of the TLB survives it.
        self.recent.invalidate_all();
        let sid = cmd.sid();
        let vmid = cmd.vmid();
        let ssid = cmd.ssv().then(|| cmd.ssid());
        match cmd.opcode() {
            opcode::PREFETCH_CONFIG | opcode::PREFETCH_ADDR => {}
            opcode::CFGI_STE => self.forget_streams(|s| s == sid),
            opcode::CFGI_STE_RANGE => match cmd.range() {
                31 => self.forget_streams(|_| true),
                range => {
                    let n = 1u64 << (u32::from(range) + 1);
                    let base = u64::from(sid) & !(n - 1);
                    self.forget_streams(|s| (base..base + n).contains(&u64::from(s)))
                }
            },
            opcode::CFGI_CD => {
                let index = cmd.ssid();
                self.contexts.remove(&(sid, index));
            }
            opcode::CFGI_CD_ALL => self.contexts.retain(|&(s, _), _| s != sid),
            opcode::TLBI_NH_ALL => self
                .tlb
                .invalidate(|v, tag| v == vmid && matches!(tag, TlbTag::Stage1 { .. })),
            opcode::TLBI_NH_ASID => {
                let asid = Some(cmd.asid());
                self.tlb.invalidate(|v, tag| {
                    v == vmid && matches!(tag, TlbTag::Stage1 { asid: a, .. } if a == asid)
                })
            }
            opcode::TLBI_NH_VA => {
                let asid = cmd.asid();
                let (start, last) = tlbi_range(&cmd);
                self.tlb.invalidate_range(
                    |v, tag| {
                        v == vmid
                            && matches!(tag, TlbTag::Stage1 { asid: a, .. } if a.is_none_or(|a| a == asid))
                    },
                    start,
                    last,
                )
            }
            opcode::TLBI_NH_VAA => {
                let (start, last) = tlbi_range(&cmd);
                self.tlb.invalidate_range(
                    |v, tag| v == vmid && matches!(tag, TlbTag::Stage1 { .. }),
                    start,
                    last,
                )
            }
            opcode::TLBI_S12_VMALL => {
                self.tlb.invalidate(|v, _| v == vmid);
                self.s2_tables.retain(|&(v, _, _), _| v != vmid);
            }
            opcode::TLBI_S2_IPA => {
                let (start, last) = tlbi_range(&cmd);
                self.tlb
                    .invalidate_range(|v, tag| v == vmid && tag == TlbTag::Stage2, start, last);
                // Walk-cache entries are few and cheap to refill: all of the VMID's go.
                self.s2_tables.retain(|&(v, _, _), _| v != vmid);
                // Nested translations are tagged by VA; the IPA they went through is not
                // kept, so all of the VMID's go.
                self.tlb.invalidate(|v, tag| {
                    v == vmid && matches!(tag, TlbTag::Stage1 { nested: true, .. })
                })
            }
            opcode::TLBI_NSNH_ALL => {
                self.tlb.clear();
                self.s2_tables.clear();
            }
            opcode::ATC_INV => {
                let (start, last) = atc_range(&cmd);
                effects.push(DeviceEffect::AtcInvalidate {
                    sid,
                    ssid: if cmd.atc_global() { None } else { ssid },
                    start,
                    last,
                });
            }
            opcode::PRI_RESP => {
                let response = PriResponse::from_code(cmd.pri_response()).ok_or(illegal)?;
                let group = cmd.pri_group();
                if self.pri.respond((sid, ssid, group)) {
                    effects.push(DeviceEffect::PageResponse {
                        sid,
                        ssid,
                        group,
                        response,
                    });
                }
            }
            opcode::RESUME => {
                let retry = match cmd.resume_action() {
                    1 => true,
                    0 | 2 => false,
                    _ => return Err(illegal),
                };
                let stag = cmd.stag();
                if self.stalls.resume(sid, stag, retry) {
                    effects.push(DeviceEffect::StallResolved { sid, stag, retry });
                }
            }
            opcode::STALL_TERM => {
                for stag in self.stalls.terminate_stream(sid) {
                    effects.push(DeviceEffect::StallResolved {
                        sid,
                        stag,
                        retry: false,
                    });
                }
            }
            opcode::SYNC => {
                let address = cmd.sync_msi_address();
                if cmd.sync_cs() == 1 && address != 0 {
                    let data = cmd.sync_msi_data().to_le();
                    if memory
                        .store(data, GuestAddress(address), Ordering::Release)
                        .is_err()
                    {
                        self.sync_write_failures += 1;
                    }
                }
            }
            // EL2 and secure streams are not modelled; anything else is not a command.
            _ => return Err(illegal),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlbi_ranges() {
        let single = Command([u64::from(opcode::TLBI_NH_VA), 0x5000]);
        assert_eq!(tlbi_range(&single), (0x5000, 0x5000));
        // TG 4 KiB, NUM 2, SCALE 1: 6 pages.
        let range = Command([
            u64::from(opcode::TLBI_NH_VA) | 2 << 12 | 1 << 20,
            0x10_0000 | 1 << 10,
        ]);
        assert_eq!(tlbi_range(&range), (0x10_0000, 0x10_5fff));
        // TG 64 KiB, NUM 31, SCALE 31: saturates rather than wraps.
        let huge = Command([31 << 12 | 31 << 20, !0xfff | 3 << 10]);
        assert_eq!(tlbi_range(&huge).1, u64::MAX);
    }

    #[test]
    fn atc_ranges_are_aligned_and_52_means_all() {
        let cmd = Command([u64::from(opcode::ATC_INV), 0x12_3000 | 4]);
        assert_eq!(atc_range(&cmd), (0x12_0000, 0x12_ffff));
        let all = Command([u64::from(opcode::ATC_INV), 52]);
        assert_eq!(atc_range(&all), (0, u64::MAX));
    }
}
