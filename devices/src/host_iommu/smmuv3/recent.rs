//! A small direct-mapped cache of the last translations by stream, substream and 4 KiB
//! page, in front of the configuration caches and the TLB: a repeated access costs one
//! hash and one comparison. Every command empties it (a generation count, so emptying is
//! one increment), which keeps it exact without tracking what each command names.

use super::access::Access;
use super::translation::Translation;

const SLOTS: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Slot {
    generation: u64,
    sid: u32,
    /// Substream ID, or `u32::MAX` for none (real ones have 20 bits).
    ssid: u32,
    page: u64,
    translation: Translation,
}

#[derive(Debug)]
pub struct RecentTranslations {
    slots: Box<[Option<Slot>; SLOTS]>,
    generation: u64,
}

impl Default for RecentTranslations {
    fn default() -> Self {
        Self {
            slots: Box::new([None; SLOTS]),
            generation: 0,
        }
    }
}

#[inline]
fn slot(sid: u32, ssid: u32, page: u64) -> usize {
    let key = page ^ u64::from(sid).rotate_left(40) ^ u64::from(ssid).rotate_left(20);
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SLOTS.ilog2())) as usize
}

impl RecentTranslations {
    #[inline]
    pub fn lookup(
        &self,
        sid: u32,
        ssid: Option<u32>,
        input: u64,
        access: Access,
    ) -> Option<Translation> {
        let ssid = ssid.unwrap_or(u32::MAX);
        let page = input >> 12;
        let s = self.slots[slot(sid, ssid, page)].as_ref()?;
        (s.generation == self.generation
            && s.sid == sid
            && s.ssid == ssid
            && s.page == page
            && s.translation.permits(access))
        .then_some(s.translation)
    }

    pub fn insert(&mut self, sid: u32, ssid: Option<u32>, input: u64, translation: Translation) {
        let ssid = ssid.unwrap_or(u32::MAX);
        let page = input >> 12;
        self.slots[slot(sid, ssid, page)] = Some(Slot {
            generation: self.generation,
            sid,
            ssid,
            page,
            translation,
        });
    }

    pub fn invalidate_all(&mut self) {
        self.generation += 1;
    }
}
