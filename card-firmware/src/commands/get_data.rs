//! GET DATA (GP 2.3.1 §11.3): card and domain data objects.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::tlv::write_tlv;

use crate::aid::ISD_AID;
use crate::error::{refuse, Error, Result};
use crate::keys::DomainKeys;
use crate::privileges::Privileges;
use crate::session::is_gp_class;
use crate::session::{ok, Ctx};
use crate::Sw;

/// The card recognition data (GP 2.3.1 Annex H), tag `66`, naming the protocol of `domain`.
fn card_data(domain: &DomainKeys) -> Vec<u8> {
    const GP_OID: [u8; 6] = [0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B];
    let oid = |suffix: &[u8]| {
        let mut v = GP_OID.to_vec();
        v.extend_from_slice(suffix);
        let mut out = Vec::new();
        write_tlv(&mut out, 0x06, &v);
        out
    };
    let mut inner = Vec::new();
    inner.extend_from_slice(&oid(&[0x01]));
    write_tlv(&mut inner, 0x60, &oid(&[0x02, 0x02, 0x03, 0x01]));
    write_tlv(&mut inner, 0x63, &oid(&[0x03]));
    write_tlv(
        &mut inner,
        0x64,
        &oid(&[0x04, domain.scp.scp, domain.scp.i]),
    );
    let mut rec = Vec::new();
    write_tlv(&mut rec, 0x73, &inner);
    rec
}

/// GET DATA `2F00`: an application template `61 { 4F AID }` for every application associated
/// with the selected domain, or every application when it has Global Registry (the ISD).
fn application_list(ctx: &Ctx<'_>) -> Vec<u8> {
    let global = ctx
        .state
        .privileges(&ctx.sd)
        .is_some_and(|p| p.has(Privileges::GLOBAL_REGISTRY));
    let mut out = Vec::new();
    for app in &ctx.state.registry.applications {
        if global || app.associated_sd == ctx.sd {
            let mut inner = Vec::new();
            write_tlv(&mut inner, 0x4F, app.aid.as_bytes());
            write_tlv(&mut out, 0x61, &inner);
        }
    }
    out
}

/// Card capability information, tag `67` (GP 2.3.1 H.4): the protocols with their options, the
/// privileges SSDs and applications can be given, LFDB hashes, LFDB ciphers, and the signature
/// schemes for tokens, receipts and DAPs.
fn card_capabilities() -> Vec<u8> {
    // Signature schemes (Table H-9): 3DES retail MAC, AES-CMAC 128/192/256, and with the
    // asymmetric code RSA PKCS#1 v1.5 SHA-1 (<= 1024 bits), RSA PSS SHA-256, ECDSA P-256.
    const SYMMETRIC: u8 = 0x04 | 0x08 | 0x10 | 0x20;
    const SIGNATURES: u8 = if cfg!(feature = "asymmetric-dap") {
        SYMMETRIC | 0x01 | 0x02 | 0x40
    } else {
        SYMMETRIC
    };
    let mut scp03 = Vec::new();
    write_tlv(&mut scp03, 0x80, &[0x03]);
    write_tlv(&mut scp03, 0x81, &[0x00, 0x10, 0x20, 0x30, 0x60, 0x70]);
    write_tlv(&mut scp03, 0x82, &[0x07]);
    let mut scp02 = Vec::new();
    write_tlv(&mut scp02, 0x80, &[0x02]);
    write_tlv(&mut scp02, 0x81, &[0x15, 0x55]);
    let mut inner = Vec::new();
    write_tlv(&mut inner, 0xA0, &scp03);
    write_tlv(&mut inner, 0xA0, &scp02);
    write_tlv(&mut inner, 0x81, &Privileges::SSD_GRANTABLE.0);
    write_tlv(&mut inner, 0x82, &Privileges::APP_GRANTABLE.0);
    write_tlv(&mut inner, 0x83, &[0x01, 0x02, 0x03, 0x04]);
    // LFDB encryption: 3DES, AES-128/192/256, with an ICV.
    write_tlv(&mut inner, 0x84, &[0x8F]);
    write_tlv(&mut inner, 0x85, &[SIGNATURES]);
    write_tlv(&mut inner, 0x86, &[SYMMETRIC]);
    write_tlv(&mut inner, 0x87, &[SIGNATURES]);
    if cfg!(feature = "asymmetric-dap") {
        // Key parameter reference 00: P-256.
        write_tlv(&mut inner, 0x88, &[0x00]);
    }
    inner
}

/// Key information template `E0` (GP 2.3.1 Table 11-28, basic format).
pub(crate) fn key_information(domain: &DomainKeys) -> Vec<u8> {
    let mut inner = Vec::new();
    for set in &domain.sets {
        for key in &set.keys {
            let mut info = alloc::vec![key.id, set.kvn];
            info.extend_from_slice(&key.info_components());
            write_tlv(&mut inner, 0xC0, &info);
        }
    }
    inner
}

/// GET DATA (GP 2.3.1 §11.3). With a GP class byte the whole TLV object is returned, with an
/// ISO class byte its value only.
pub(crate) fn get_data(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    let tag = u16::from_be_bytes([cmd.p1, cmd.p2]);
    let gp_class = is_gp_class(cmd.cla);
    if gp_class && cmd.ins != 0xCA {
        return refuse(Sw::INS_NOT_SUPPORTED);
    }
    let state = &*ctx.state;
    let isd = ctx.sd == ISD_AID;
    let domain = state
        .domain(&ctx.sd)
        .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
    if tag == 0x2F00 {
        // The list of applications (GP 11.3.3.1.3): the same format for both classes; the
        // tag list `5C 00` is expected and may be left out.
        if !cmd.data.is_empty() && cmd.data != [0x5C, 0x00] {
            return refuse(Sw::INCORRECT_DATA);
        }
        let list = application_list(ctx);
        if list.is_empty() {
            return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
        }
        return ok(list);
    }
    let value: Vec<u8> = match tag {
        0x0042 if isd && !state.iin.is_empty() => state.iin.clone(),
        0x0067 if isd => card_capabilities(),
        0x00C2 if isd => state.confirmation_counter.to_be_bytes().to_vec(),
        0x0045 if isd && !state.cin.is_empty() => state.cin.clone(),
        0x0066 => card_data(domain),
        0x00CF => state.kdd.to_vec(),
        0x00C1 => {
            let set = domain
                .set(0)
                .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
            let b = set.sequence_counter.to_be_bytes();
            if domain.scp.scp == 0x02 {
                b.get(2..).unwrap_or_default().to_vec()
            } else {
                b.get(1..).unwrap_or_default().to_vec()
            }
        }
        0x00E0 => key_information(domain),
        0x9F7F => state.cplc.to_vec(),
        _ => return refuse(Sw::REFERENCED_DATA_NOT_FOUND),
    };
    if gp_class {
        let mut out = Vec::new();
        write_tlv(&mut out, u32::from(tag), &value);
        ok(out)
    } else {
        ok(value)
    }
}
