//! The model as a nested host IOMMU: installed guest STEs get the host's stage 2 the way
//! the kernel builds a nested STE (guest Config S1-translate becomes nested, bypass
//! becomes stage-2-only), invalidations get the host's VMID, stalled transactions and PCIe
//! page requests become page requests with cookies, and answers become RESUME and
//! PRI_RESP.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::MutexGuard;

use vm_memory::GuestMemory;

use super::pri_queue::PriResponse;
use super::wire::ste::config;
use super::wire::{opcode, Command, Ste};
use super::Smmuv3;
use super::Transaction;
use crate::host_iommu::nested::{
    check_vste, Access, Fault, FaultNotifiers, InvalidateError, NestedError, NestedEvent,
    NestedHostIommu, NestedTranslator, PagePermissions, PageRequest, PageResponseCode, Translation,
    VSTE1_ALLOWED,
};

const SEQUENCE_MASK: u32 = 0x7fff_ffff;
const EATS: u64 = 3 << 28;

/// The host-owned stage 2 every installed stream translates through: STE dwords 2 (VMID,
/// S2T0SZ, S2SL0, S2TG, S2PS, S2AA64, S2AFFD, S2S, S2R) and 3 (S2TTB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStage2 {
    pub ste_dword2: u64,
    pub ste_dword3: u64,
}

impl HostStage2 {
    pub fn vmid(&self) -> u16 {
        self.ste_dword2 as u16
    }
}

/// What answering a cookie does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Resume {
        sid: u32,
        stag: u16,
    },
    PriResponse {
        sid: u32,
        ssid: Option<u32>,
        group: u16,
    },
}

impl Answer {
    fn sid(&self) -> u32 {
        match *self {
            Answer::Resume { sid, .. } | Answer::PriResponse { sid, .. } => sid,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct NestedState {
    host_stage2: Option<HostStage2>,
    /// Page request groups handed out and not answered yet.
    cookies: HashMap<u32, Answer>,
    next_cookie: u32,
    /// The event sequence number expected next: a larger one means events were lost.
    next_event_sequence: u32,
}

impl NestedState {
    fn cookie_for(&mut self, answer: Answer) -> u32 {
        if let Some((&cookie, _)) = self.cookies.iter().find(|(_, a)| **a == answer) {
            return cookie;
        }
        let cookie = self.next_cookie;
        self.next_cookie = self.next_cookie.wrapping_add(1);
        self.cookies.insert(cookie, answer);
        cookie
    }
}

/// CMD_PRI_RESP for a group: Success, or Invalid Request.
fn pri_response(sid: u32, ssid: Option<u32>, group: u16, success: bool) -> Command {
    let response = if success {
        PriResponse::Success
    } else {
        PriResponse::Deny
    };
    let ssid_bits = ssid.map_or(0, |s| 1 << 11 | u64::from(s) << 12);
    Command([
        u64::from(opcode::PRI_RESP) | ssid_bits | u64::from(sid) << 32,
        u64::from(group) | (response as u64) << 12,
    ])
}

/// Reads an eventfd empty so it polls readable only after the next write.
fn drain(fd: &vmm_sys_util::eventfd::EventFd) {
    let _ = fd.read();
}

impl<M: GuestMemory> Smmuv3<M> {
    pub(crate) fn nested_state(&self) -> MutexGuard<'_, NestedState> {
        self.nested.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stage 2 installed streams translate through; `None`: stage 2 bypassed (the
    /// guest's IPAs are this memory's addresses).
    pub fn set_host_stage2(&self, stage2: Option<HostStage2>) {
        self.nested_state().host_stage2 = stage2;
        let mut state = self.state();
        state.forget_streams(|_| true);
        // New tables under a VMID that may be the old one's: nothing cached survives.
        state.tlb.clear();
        state.s2_tables.clear();
    }

    #[cfg(test)]
    pub(crate) fn cookies_held(&self) -> usize {
        self.nested_state().cookies.len()
    }

    /// The STE the model installs for a guest's vSTE.
    fn nested_ste(&self, vste: [u64; 2]) -> Ste {
        let host = self.nested_state().host_stage2;
        let mut ste = Ste([1, 0, 0, 0, 0, 0, 0, 0]);
        if vste[0] & 1 == 0 {
            return ste;
        }
        let guest_config = (vste[0] >> 1 & 7) as u8;
        let config = match (guest_config, host.is_some()) {
            (config::S1_TRANSLATE, true) => config::NESTED,
            (config::BYPASS, true) => config::S2_TRANSLATE,
            (c, _) => c,
        };
        ste.0[0] = (vste[0] & !0b1110) | u64::from(config) << 1;
        ste.0[1] = vste[1] & VSTE1_ALLOWED & !EATS;
        if let Some(host) = host {
            ste.0[2] = host.ste_dword2;
            ste.0[3] = host.ste_dword3;
        }
        ste
    }

    /// Ends what the stream had waiting: stalled transactions are terminated, and the
    /// device is told its unanswered page request groups failed, as the kernel answers
    /// them when a table goes: nobody is left to answer them.
    fn abandon_waiting(&self, sid: u32) {
        let mut commands = vec![Command([
            u64::from(opcode::STALL_TERM) | u64::from(sid) << 32,
            0,
        ])];
        self.nested_state()
            .cookies
            .retain(|_, answer| match *answer {
                Answer::PriResponse {
                    sid: s,
                    ssid,
                    group,
                } if s == sid => {
                    commands.push(pri_response(sid, ssid, group, false));
                    false
                }
                answer => answer.sid() != sid,
            });
        // Legal by construction; a group answered meanwhile is skipped by the model.
        for command in commands {
            let _ = self.execute(&[command]);
        }
    }

    fn install(&self, stream: u32, ste: Ste) {
        {
            let mut state = self.state();
            state.installed.insert(stream, ste);
            state.forget_streams(|s| s == stream);
        }
        self.abandon_waiting(stream);
    }
}

impl<M: GuestMemory + Send + Sync> NestedHostIommu for Smmuv3<M> {
    fn hw_info(&self) -> [u32; 6] {
        self.caps.idr()
    }

    fn install_ste(&self, stream: u32, vste: [u64; 2]) -> Result<(), NestedError> {
        check_vste(stream, vste)?;
        let ste = self.nested_ste(vste);
        self.install(stream, ste);
        Ok(())
    }

    fn remove_ste(&self, stream: u32) -> Result<(), NestedError> {
        self.install(stream, Ste([1, 0, 0, 0, 0, 0, 0, 0]));
        Ok(())
    }

    fn invalidate(&self, commands: &[Command]) -> Result<(), InvalidateError> {
        let vmid = self.nested_state().host_stage2.map_or(0, |h| h.vmid());
        for (done, cmd) in commands.iter().enumerate() {
            let mut cmd = *cmd;
            let stop = InvalidateError {
                done,
                opcode: cmd.opcode(),
            };
            match cmd.opcode() {
                opcode::TLBI_NSNH_ALL => {
                    cmd = Command([u64::from(opcode::TLBI_NH_ALL), 0]);
                    cmd.set_vmid(vmid);
                }
                opcode::TLBI_NH_ALL
                | opcode::TLBI_NH_ASID
                | opcode::TLBI_NH_VA
                | opcode::TLBI_NH_VAA => cmd.set_vmid(vmid),
                opcode::ATC_INV | opcode::CFGI_CD | opcode::CFGI_CD_ALL => {}
                _ => return Err(stop),
            }
            self.execute(&[cmd]).map_err(|_| stop)?;
        }
        Ok(())
    }

    fn fault_notifiers(&self) -> FaultNotifiers<'_> {
        // SAFETY: both eventfds are owned by `self` and outlive the borrows.
        unsafe {
            FaultNotifiers {
                events: BorrowedFd::borrow_raw(self.events_ready.as_raw_fd()),
                page_requests: BorrowedFd::borrow_raw(self.page_requests_ready.as_raw_fd()),
            }
        }
    }

    fn read_events(&self, max: usize) -> Result<Vec<NestedEvent>, NestedError> {
        drain(&self.events_ready);
        let mut nested = self.nested_state();
        let mut state = self.state();
        let mut out = Vec::new();
        while out.len() < max {
            let Some((sequence, record)) = state.events.pop() else {
                break;
            };
            let lost_before = sequence.wrapping_sub(nested.next_event_sequence) & SEQUENCE_MASK;
            nested.next_event_sequence = (sequence + 1) & SEQUENCE_MASK;
            // Stalls reach the guest as page requests, as the kernel reports them.
            if !record.stall() {
                out.push(NestedEvent {
                    record,
                    lost_before,
                });
            }
        }
        if !state.events.is_empty() {
            let _ = self.events_ready.write(1);
        }
        Ok(out)
    }

    fn read_page_requests(&self, max: usize) -> Result<Vec<PageRequest>, NestedError> {
        drain(&self.page_requests_ready);
        let mut nested = self.nested_state();
        let mut state = self.state();
        // Forget groups answered behind the cookies' back (RESUME, PRI_RESP or STALL_TERM
        // commands), so the table stays bounded by what can be outstanding.
        if nested.cookies.len() >= self.caps.max_stalls + self.caps.pri_queue_depth {
            nested.cookies.retain(|_, answer| match *answer {
                Answer::Resume { sid, stag } => state.stalls.is_waiting(sid, stag),
                Answer::PriResponse { sid, ssid, group } => {
                    state.pri.is_outstanding((sid, ssid, group))
                }
            });
        }
        let mut out = Vec::new();
        while out.len() < max {
            let Some((stag, stalled)) = state.stalls.next_unreported() else {
                break;
            };
            let sid = stalled.sid;
            out.push(PageRequest {
                stream: sid,
                pasid: stalled.ssid,
                group: stag.into(),
                permissions: PagePermissions {
                    read: !stalled.access.write,
                    write: stalled.access.write,
                    execute: stalled.access.instruction,
                    privileged: stalled.access.privileged,
                },
                address: stalled.address,
                last: true,
                cookie: nested.cookie_for(Answer::Resume { sid, stag }),
            });
        }
        while out.len() < max {
            let Some(entry) = state.pri.pop() else {
                break;
            };
            let answer = Answer::PriResponse {
                sid: entry.sid(),
                ssid: entry.ssid(),
                group: entry.group(),
            };
            out.push(PageRequest {
                stream: entry.sid(),
                pasid: entry.ssid(),
                group: entry.group().into(),
                permissions: PagePermissions {
                    read: entry.read(),
                    write: entry.write(),
                    execute: false,
                    privileged: false,
                },
                address: entry.address(),
                last: entry.last(),
                cookie: nested.cookie_for(answer),
            });
        }
        if state.stalls.has_unreported() || !state.pri.is_empty() {
            let _ = self.page_requests_ready.write(1);
        }
        Ok(out)
    }

    fn page_response(&self, cookie: u32, code: PageResponseCode) -> Result<(), NestedError> {
        let answer = self
            .nested_state()
            .cookies
            .remove(&cookie)
            .ok_or(NestedError::UnknownCookie(cookie))?;
        let success = code == PageResponseCode::Success;
        let cmd = match answer {
            Answer::Resume { sid, stag } => Command([
                u64::from(opcode::RESUME)
                    | u64::from(if success { 1u8 } else { 2 }) << 12
                    | u64::from(sid) << 32,
                stag.into(),
            ]),
            Answer::PriResponse { sid, ssid, group } => pri_response(sid, ssid, group, success),
        };
        // Both commands are legal by construction.
        let _ = self.execute(&[cmd]);
        Ok(())
    }
}

impl<M: GuestMemory + Send + Sync> NestedTranslator for Smmuv3<M> {
    fn translate(
        &self,
        stream: u32,
        pasid: Option<u32>,
        address: u64,
        access: Access,
    ) -> Result<Translation, Fault> {
        Smmuv3::translate(
            self,
            &Transaction {
                sid: stream,
                ssid: pasid,
                address,
                access,
            },
        )
    }
}
