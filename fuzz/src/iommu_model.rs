//! A reference model of the virtio-iommu (virtio spec, "IOMMU device"): what each request
//! answers and does to domains, endpoints and mappings, what an endpoint's DMA reaches, and
//! which fault records wait for the eventq. Written from the spec's rules with plain lists,
//! independently of the device's maps and trees.

use std::collections::{BTreeMap, VecDeque};

use devices::virtio::iommu::IommuConfig;
use vm_memory::Permissions;

use super::iommu_nested_model::{
    readable_size, AttachTable, NestedModel, FEATURE_ATTACH_TABLE, FEATURE_PAGE_REQUEST,
    INVALIDATE, PAGE_RESP, PROPERTY_SIZE, S_UNSUPP,
};

pub const FEATURE_PROBE: u64 = 1 << 4;
pub const FEATURE_MMIO: u64 = 1 << 5;
pub const FEATURE_BYPASS_CONFIG: u64 = 1 << 6;

pub const ATTACH: u8 = 1;
pub const DETACH: u8 = 2;
pub const MAP: u8 = 3;
pub const UNMAP: u8 = 4;
pub const PROBE: u8 = 5;

pub const S_OK: u8 = 0;
pub const S_INVAL: u8 = 4;
pub const S_RANGE: u8 = 5;
pub const S_NOENT: u8 = 6;
pub const S_NOMEM: u8 = 8;

const MAP_F_READ: u32 = 1;
const MAP_F_WRITE: u32 = 2;
const MAP_F_MMIO: u32 = 4;
const ATTACH_F_BYPASS: u32 = 1;

pub const FAULT_R_UNKNOWN: u8 = 0;
pub const FAULT_R_DOMAIN: u8 = 1;
pub const FAULT_R_MAPPING: u8 = 2;
pub const FAULT_RECORD_SIZE: usize = 24;
const RESV_MEM_T_MSI: u8 = 1;
/// Largest PROBE properties area the device fills.
const MAX_PROPERTY_FILL: usize = 64 << 10;

#[derive(Debug, Clone, Copy)]
struct Mapping {
    start: u64,
    end: u64,
    phys: u64,
    flags: u32,
}

impl Mapping {
    fn allows(&self, access: Permissions) -> bool {
        let read = matches!(access, Permissions::Read | Permissions::ReadWrite);
        let write = matches!(access, Permissions::Write | Permissions::ReadWrite);
        (!read || self.flags & MAP_F_READ != 0) && (!write || self.flags & MAP_F_WRITE != 0)
    }
}

#[derive(Debug, Clone, Default)]
struct Domain {
    bypass: bool,
    /// Table mode: the STE words every endpoint shares.
    table: Option<(u64, u64)>,
    endpoints: Vec<u32>,
    mappings: Vec<Mapping>,
}

/// One eventq fault record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub reason: u8,
    pub flags: u32,
    pub endpoint: u32,
    pub address: u64,
    /// With flag PASID (bit 9) in the record.
    pub pasid: Option<u32>,
    /// A record of the SMMU's, from tables the model does not walk: its bytes are unknown.
    pub opaque: bool,
}

impl Fault {
    pub fn opaque() -> Self {
        Self {
            reason: 0,
            flags: 0,
            endpoint: 0,
            address: 0,
            pasid: None,
            opaque: true,
        }
    }

    pub fn to_bytes(self) -> [u8; FAULT_RECORD_SIZE] {
        let mut b = [0u8; FAULT_RECORD_SIZE];
        let flags = self.flags | self.pasid.map_or(0, |_| 1 << 9);
        b[0] = self.reason;
        b[4..8].copy_from_slice(&flags.to_le_bytes());
        b[8..12].copy_from_slice(&self.endpoint.to_le_bytes());
        b[12..16].copy_from_slice(&self.pasid.unwrap_or(0).to_le_bytes());
        b[16..24].copy_from_slice(&self.address.to_le_bytes());
        b
    }
}

/// What the device answers: a status and, for PROBE, the properties written before it.
#[derive(Debug, PartialEq, Eq)]
pub struct ModelAnswer {
    pub status: u8,
    pub properties: Option<Vec<u8>>,
}

pub struct IommuModel {
    pub config: IommuConfig,
    pub negotiated: u64,
    pub bypass: bool,
    endpoints: BTreeMap<u32, Option<u32>>,
    domains: BTreeMap<u32, Domain>,
    /// Fault records admitted and waiting, oldest first, at most `max_pending`.
    pub pending_faults: VecDeque<Fault>,
    pub max_pending: usize,
    /// Nested mode (the extension offered).
    pub nested: Option<NestedModel>,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

impl IommuModel {
    pub fn new(
        config: IommuConfig,
        negotiated: u64,
        endpoints: &[u32],
        max_pending: usize,
    ) -> Self {
        Self {
            bypass: config.default_bypass,
            config,
            negotiated,
            endpoints: endpoints.iter().map(|&e| (e, None)).collect(),
            domains: BTreeMap::new(),
            pending_faults: VecDeque::new(),
            max_pending,
            nested: None,
        }
    }

    /// Whether `endpoint` is in a table-mode domain: its DMA goes through tables in guest
    /// memory the model does not walk.
    pub fn is_table(&self, endpoint: u32) -> bool {
        self.domain_of(endpoint)
            .and_then(|d| self.domains.get(&d))
            .is_some_and(|d| d.table.is_some())
    }

    pub fn domain_of(&self, endpoint: u32) -> Option<u32> {
        self.endpoints.get(&endpoint).copied().flatten()
    }

    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    pub fn mapping_count(&self, domain: u32) -> Option<usize> {
        self.domains.get(&domain).map(|d| d.mappings.len())
    }

    pub fn total_mappings(&self) -> usize {
        self.domains.values().map(|d| d.mappings.len()).sum()
    }

    pub fn domain_ids(&self) -> Vec<u32> {
        self.domains.keys().copied().collect()
    }

    /// Device reset: domains and pending faults go; endpoints and the bypass byte stay.
    pub fn reset(&mut self) {
        self.domains.clear();
        self.endpoints.values_mut().for_each(|d| *d = None);
        self.pending_faults.clear();
    }

    fn granule(&self) -> u64 {
        let mask = if self.config.page_size_mask == 0 {
            1
        } else {
            self.config.page_size_mask
        };
        1 << mask.trailing_zeros()
    }

    fn domain_in_range(&self, domain: u32) -> bool {
        (self.config.domain_range.0..=self.config.domain_range.1).contains(&domain)
    }

    fn input_in_range(&self, start: u64, end: u64) -> bool {
        start >= self.config.input_range.0 && end <= self.config.input_range.1
    }

    /// The answer to a request whose device-readable part starts with `req` and whose
    /// device-writable part is `writable_len` bytes; None when the device writes nothing.
    pub fn execute(&mut self, req: &[u8], writable_len: u32) -> Option<ModelAnswer> {
        if writable_len < 4 {
            return None;
        }
        let kind = *req.first()?;
        let status = |s: u8| {
            Some(ModelAnswer {
                status: s,
                properties: None,
            })
        };
        if let (Some(needed), true) = (readable_size(kind), self.nested.is_some()) {
            return status(self.nested_request(kind, req, needed));
        }
        let needed = match kind {
            ATTACH | DETACH => 20,
            MAP => 36,
            UNMAP => 28,
            PROBE if self.negotiated & FEATURE_PROBE != 0 => 72,
            _ => return None,
        };
        if req.len() < needed {
            return None;
        }
        match kind {
            ATTACH => {
                let (domain, endpoint, flags) = (le32(req, 4), le32(req, 8), le32(req, 12));
                let known = if self.negotiated & FEATURE_BYPASS_CONFIG != 0 {
                    ATTACH_F_BYPASS
                } else {
                    0
                };
                if flags & !known != 0 || le32(req, 16) != 0 {
                    return status(S_INVAL);
                }
                status(self.attach(domain, endpoint, flags & ATTACH_F_BYPASS != 0))
            }
            DETACH => status(self.detach(le32(req, 4), le32(req, 8))),
            MAP => {
                let m = Mapping {
                    start: le64(req, 8),
                    end: le64(req, 16),
                    phys: le64(req, 24),
                    flags: le32(req, 32),
                };
                status(self.map(le32(req, 4), m))
            }
            UNMAP => {
                let (domain, start, end) = (le32(req, 4), le64(req, 8), le64(req, 16));
                if le32(req, 24) != 0 || end < start {
                    return status(S_INVAL);
                }
                status(self.unmap(domain, start, end))
            }
            _ => Some(self.probe(le32(req, 4), writable_len as usize - 4)),
        }
    }

    fn nested_request(&mut self, kind: u8, req: &[u8], needed: usize) -> u8 {
        let feature = if kind == PAGE_RESP {
            FEATURE_PAGE_REQUEST
        } else {
            FEATURE_ATTACH_TABLE
        };
        if self.negotiated & feature == 0 {
            return S_UNSUPP;
        }
        if req.len() < needed {
            return S_INVAL;
        }
        match kind {
            PAGE_RESP => NestedModel::page_resp(req),
            INVALIDATE => match NestedModel::parse_invalidate(req) {
                Err(status) => status,
                Ok(domain) if !self.domain_in_range(domain) => S_RANGE,
                Ok(domain) => match self.domains.get(&domain) {
                    None => S_NOENT,
                    Some(d) if d.table.is_none() => S_INVAL,
                    Some(_) => S_OK,
                },
            },
            _ => match NestedModel::parse_attach_table(req) {
                Err(status) => status,
                Ok(a) => self.attach_table(a),
            },
        }
    }

    fn attach_table(&mut self, a: AttachTable) -> u8 {
        if !self.domain_in_range(a.domain) {
            return S_RANGE;
        }
        let Some(&current) = self.endpoints.get(&a.endpoint) else {
            return S_NOENT;
        };
        let checked = self.nested.as_ref().map_or(S_OK, |n| n.check_ste(a.words));
        if checked != S_OK {
            return checked;
        }
        match self.domains.get_mut(&a.domain) {
            None => {
                // As a plain ATTACH creating the domain: the same limit.
                let status = self.attach(a.domain, a.endpoint, false);
                if status == S_OK {
                    self.domains.get_mut(&a.domain).unwrap().table = Some(a.words);
                }
                status
            }
            Some(d) => {
                if d.bypass || !d.mappings.is_empty() {
                    return S_INVAL;
                }
                let others = d.endpoints.iter().any(|&e| e != a.endpoint);
                match d.table {
                    Some(words) if words == a.words => {}
                    _ if others => return S_INVAL,
                    _ => d.table = Some(a.words),
                }
                if current != Some(a.domain) {
                    if let Some(old) = current {
                        self.leave(old, a.endpoint);
                    }
                    self.domains
                        .get_mut(&a.domain)
                        .unwrap()
                        .endpoints
                        .push(a.endpoint);
                    self.endpoints.insert(a.endpoint, Some(a.domain));
                }
                S_OK
            }
        }
    }

    fn attach(&mut self, domain: u32, endpoint: u32, bypass: bool) -> u8 {
        if !self.domain_in_range(domain) {
            return S_RANGE;
        }
        let Some(&current) = self.endpoints.get(&endpoint) else {
            return S_NOENT;
        };
        match self.domains.get(&domain) {
            Some(d) if d.bypass != bypass => return S_INVAL,
            Some(_) if current == Some(domain) => return S_OK,
            Some(_) => {}
            None => {
                // A move out of a domain whose last endpoint this is frees that domain.
                let frees_one = current
                    .and_then(|old| self.domains.get(&old))
                    .is_some_and(|old| old.endpoints.len() == 1);
                if self.domains.len() - usize::from(frees_one) >= self.config.limits.max_domains {
                    return S_NOMEM;
                }
            }
        }
        if let Some(old) = current {
            self.leave(old, endpoint);
        }
        self.domains
            .entry(domain)
            .or_insert_with(|| Domain {
                bypass,
                ..Domain::default()
            })
            .endpoints
            .push(endpoint);
        self.endpoints.insert(endpoint, Some(domain));
        S_OK
    }

    fn leave(&mut self, domain: u32, endpoint: u32) {
        if let Some(d) = self.domains.get_mut(&domain) {
            d.endpoints.retain(|&e| e != endpoint);
            if d.endpoints.is_empty() {
                self.domains.remove(&domain);
            }
        }
    }

    fn detach(&mut self, domain: u32, endpoint: u32) -> u8 {
        if !self.domain_in_range(domain) {
            return S_RANGE;
        }
        let Some(&current) = self.endpoints.get(&endpoint) else {
            return S_NOENT;
        };
        if current != Some(domain) {
            return S_INVAL;
        }
        self.leave(domain, endpoint);
        self.endpoints.insert(endpoint, None);
        S_OK
    }

    fn map(&mut self, domain: u32, m: Mapping) -> u8 {
        let mut known = MAP_F_READ | MAP_F_WRITE;
        if self.negotiated & FEATURE_MMIO != 0 {
            known |= MAP_F_MMIO;
        }
        if m.flags & !known != 0 || m.end < m.start {
            return S_INVAL;
        }
        if !self.domain_in_range(domain) || !self.input_in_range(m.start, m.end) {
            return S_RANGE;
        }
        let g = self.granule();
        if m.start % g != 0 || m.phys % g != 0 || m.end.wrapping_add(1) % g != 0 {
            return S_RANGE;
        }
        if m.phys.checked_add(m.end - m.start).is_none() {
            return S_RANGE;
        }
        if self
            .config
            .reserved_regions
            .iter()
            .any(|r| m.start <= r.end && r.start <= m.end)
        {
            return S_INVAL;
        }
        let total = self.total_mappings();
        let limits = self.config.limits;
        let Some(d) = self.domains.get_mut(&domain) else {
            return S_NOENT;
        };
        if d.bypass || d.table.is_some() {
            return S_INVAL;
        }
        if d.mappings
            .iter()
            .any(|x| m.start <= x.end && x.start <= m.end)
        {
            return S_INVAL;
        }
        if d.mappings.len() >= limits.max_mappings_per_domain || total >= limits.max_total_mappings
        {
            return S_NOMEM;
        }
        d.mappings.push(m);
        S_OK
    }

    fn unmap(&mut self, domain: u32, start: u64, end: u64) -> u8 {
        if !self.domain_in_range(domain) || !self.input_in_range(start, end) {
            return S_RANGE;
        }
        let Some(d) = self.domains.get_mut(&domain) else {
            return S_NOENT;
        };
        if d.bypass || d.table.is_some() {
            return S_INVAL;
        }
        // UNMAP never splits a mapping: one that sticks out of the range fails it whole.
        let overlapping = |x: &Mapping| x.start <= end && start <= x.end;
        if d.mappings
            .iter()
            .any(|x| overlapping(x) && (x.start < start || x.end > end))
        {
            return S_RANGE;
        }
        d.mappings.retain(|x| !overlapping(x));
        S_OK
    }

    fn probe(&self, endpoint: u32, properties_len: usize) -> ModelAnswer {
        let resv_size = self.config.reserved_regions.len() * 24;
        let probe_size = resv_size + self.nested.as_ref().map_or(0, |_| PROPERTY_SIZE);
        if !self.endpoints.contains_key(&endpoint) {
            return ModelAnswer {
                status: S_NOENT,
                properties: None,
            };
        }
        if properties_len < probe_size {
            return ModelAnswer {
                status: S_INVAL,
                properties: None,
            };
        }
        let mut props = vec![0u8; properties_len.min(MAX_PROPERTY_FILL)];
        for (i, r) in self.config.reserved_regions.iter().enumerate() {
            let p = &mut props[i * 24..i * 24 + 24];
            p[0..2].copy_from_slice(&1u16.to_le_bytes());
            p[2..4].copy_from_slice(&20u16.to_le_bytes());
            p[4] = r.subtype;
            p[8..16].copy_from_slice(&r.start.to_le_bytes());
            p[16..24].copy_from_slice(&r.end.to_le_bytes());
        }
        if let Some(nested) = &self.nested {
            if self.negotiated & FEATURE_ATTACH_TABLE != 0 {
                props[resv_size..probe_size].copy_from_slice(&nested.property());
            }
        }
        ModelAnswer {
            status: S_OK,
            properties: Some(props),
        }
    }

    fn msi_window(&self) -> Option<(u64, u64)> {
        self.config
            .reserved_regions
            .iter()
            .find(|r| r.subtype == RESV_MEM_T_MSI)
            .map(|r| (r.start, r.end))
    }

    /// The guest-physical pieces `[iova, iova + len)` (len > 0) reaches through `endpoint`
    /// for `access`, or the fault the device reports, which this queues as the device does.
    /// A transaction carrying `pasid` outside a table-mode domain faults (MAPPING).
    pub fn translate(
        &mut self,
        endpoint: u32,
        pasid: Option<u32>,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<Vec<(u64, u64)>, Fault> {
        let result = match pasid {
            Some(_) => Err((FAULT_R_MAPPING, iova)),
            None => self.route(endpoint, iova, len, access),
        };
        result.map_err(|(reason, address)| {
            let flags = match access {
                Permissions::Read => 1,
                Permissions::Write => 2,
                Permissions::ReadWrite => 3,
                Permissions::No => 0,
            } | 1 << 8;
            let fault = Fault {
                reason,
                flags,
                endpoint,
                address,
                pasid,
                opaque: false,
            };
            if self.pending_faults.len() < self.max_pending {
                self.pending_faults.push_back(fault);
            }
            fault
        })
    }

    fn route(
        &self,
        endpoint: u32,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<Vec<(u64, u64)>, (u8, u64)> {
        let Some(last) = iova.checked_add(len).map(|end| end - 1) else {
            return Err((FAULT_R_MAPPING, iova));
        };
        let identity = Ok(vec![(iova, len)]);
        let domain = match self.endpoints.get(&endpoint) {
            None => return Err((FAULT_R_UNKNOWN, iova)),
            Some(None) if self.bypass => return identity,
            Some(None) => return Err((FAULT_R_DOMAIN, iova)),
            Some(Some(d)) => &self.domains[d],
        };
        if domain.bypass {
            return identity;
        }
        if access == Permissions::Write {
            if let Some((start, end)) = self.msi_window() {
                if iova >= start && last <= end {
                    return identity;
                }
            }
        }
        let mut pieces = Vec::new();
        let mut cursor = iova;
        loop {
            let m = domain
                .mappings
                .iter()
                .find(|m| m.start <= cursor && cursor <= m.end)
                .ok_or((FAULT_R_MAPPING, cursor))?;
            if !m.allows(access) {
                return Err((FAULT_R_MAPPING, cursor));
            }
            let to = m.end.min(last);
            pieces.push((m.phys + (cursor - m.start), to - cursor + 1));
            if m.end >= last {
                return Ok(pieces);
            }
            cursor = m.end + 1;
        }
    }
}
