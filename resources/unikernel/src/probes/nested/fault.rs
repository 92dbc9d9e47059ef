//! `nested-fault`: faults in the guest's stage 1 fail the job and reach the eventq with
//! the PASID. Needs nestor started with `--dma-engine iommu=nested`.
//!
//! A fill at PASID 2 to an address its tables leave unmapped fails with
//! TRANSLATION_FAULT, writes nothing, and an unrecoverable fault record (reason
//! TRANSLATION, write, the address, flag PASID with 2) arrives; a copy at PASID 1 into its
//! read-only source page reads, then fails its write with a PERMISSION record for PASID 1;
//! a PASID past the CD table's end gets a BAD_CONFIG record. The engine goes on serving.

use super::{
    copy, dst_page, fill, filled_with, src_page, Nested, FAULT_WRITE, IOVA_DST, IOVA_SRC,
    IOVA_UNMAPPED, LEN, ST_TRANSLATION_FAULT,
};
use crate::probes::{Context, Outcome, Probe};
use crate::virtio_iommu::{
    FaultRecord, FAULT_F_ADDRESS, FAULT_F_PASID, FAULT_F_WRITE, FAULT_R_BAD_CONFIG,
    FAULT_R_PERMISSION, FAULT_R_TRANSLATION,
};
use unikernel::format_line;
use unikernel::text::{hex, Line};

pub const PROBE: Probe = Probe {
    name: "nested-fault",
    run,
};

/// The job failed on a write to `address` having moved nothing.
fn failed_write(what: &str, completion: super::Completion, address: u64) -> Result<(), Line> {
    let (status, flags, done, at) = completion;
    if status != ST_TRANSLATION_FAULT || flags != FAULT_WRITE || done != 0 || at != address {
        return Err(format_line!(
            what,
            ": status ",
            status,
            " flags ",
            flags,
            " done ",
            done,
            " at ",
            hex(at, 16)
        ));
    }
    Ok(())
}

/// The record names a write to `address` at `pasid`.
fn check_record(what: &str, r: FaultRecord, pasid: u32, address: u64) -> Result<(), Line> {
    let wanted = FAULT_F_WRITE | FAULT_F_ADDRESS | FAULT_F_PASID;
    if r.flags & wanted != wanted || r.pasid != pasid || r.address != address {
        return Err(format_line!(
            what,
            " record: flags ",
            hex(u64::from(r.flags), 4),
            " PASID ",
            r.pasid,
            " at ",
            hex(r.address, 16)
        ));
    }
    Ok(())
}

fn run(ctx: &Context, _arg: Option<&str>) -> Outcome {
    let mut n = Nested::open(ctx)?;
    let endpoint = n.endpoint;

    let pattern = 0x6666_6666_6666_6666;
    let completion = n.run(fill(2, IOVA_UNMAPPED, pattern))?;
    failed_write("fill to an unmapped IOVA", completion, IOVA_UNMAPPED)?;
    let record = n.iommu.wait_record(FAULT_R_TRANSLATION, endpoint)?;
    check_record("TRANSLATION", record, 2, IOVA_UNMAPPED)?;

    src_page(1).0[..LEN].fill(0x5a);
    let completion = n.run(copy(1, IOVA_DST, IOVA_SRC))?;
    failed_write("copy into a read-only page", completion, IOVA_SRC)?;
    let record = n.iommu.wait_record(FAULT_R_PERMISSION, endpoint)?;
    check_record("PERMISSION", record, 1, IOVA_SRC)?;
    if src_page(1).0[..LEN].iter().any(|&b| b != 0x5a) {
        return Err(format_line!("the read-only page was written"));
    }

    // PASIDs 0 to 3 have CDs; 9 does not.
    let (status, ..) = n.run(fill(9, IOVA_DST, pattern))?;
    if status != ST_TRANSLATION_FAULT {
        return Err(format_line!("PASID past the CD table: status ", status));
    }
    let record = n.iommu.wait_record(FAULT_R_BAD_CONFIG, endpoint)?;
    if record.flags & FAULT_F_PASID == 0 || record.pasid != 9 {
        return Err(format_line!("BAD_CONFIG record without PASID 9"));
    }

    n.run_ok("fill after the faults", fill(2, IOVA_DST, pattern))?;
    if !filled_with(dst_page(2), pattern) {
        return Err(format_line!("the fill after the faults missed"));
    }
    n.close()
}
