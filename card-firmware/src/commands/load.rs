//! LOAD (GP 2.3.1 §11.6, Appendix C.2), after INSTALL [for load] (in [`crate::commands::install`]).
//!
//! The load session lives in RAM: blocks must arrive in order (P2 = block number, P1 `80` on the
//! last); nothing is written until the last block has been checked, so a refused, interrupted or
//! abandoned load leaves nothing behind. On the last block the load file is parsed (`E2` DAP
//! blocks, then `C4` LFDB or `D3`/`D4` ciphered LFDB); every DAP authority (the associated SD
//! with DAP Verification, any SD with Mandated DAP Verification) verifies its DAP with its key
//! (KVN `73`) over the LFDB hash from INSTALL [for load], before the LFDB is hashed or decrypted
//! (a ciphered LFDB needs that hash); only then does the associated security domain decrypt a
//! ciphered LFDB with its key (KVN `74`), and padding and hash are checked together in constant
//! time with one answer (`6A80`) for both, so the decryption is no padding oracle; the LFDB hash
//! is checked; the CAP components are decoded and the executable load file with its modules
//! enters the registry.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::tlv::TlvReader;
use sha2::Digest;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

use gp_core::dap::{self, HashAlg, SymmetricKeyKind};
use gp_core::keys::{AesKey, Des3Key};

use crate::aid::Aid;
use crate::cap;
use crate::dm::{self, Authority};
use crate::error::{refuse, Error, Result};
use crate::keys::{Key, KeyType, DAP_KVN, LFDB_KVN};
use crate::registry::LoadFile;
use crate::session::{ok, Ctx, LoadSession};
use crate::state::CardState;
use crate::Sw;

/// Largest load file the card accepts (it is buffered in RAM until the last block).
pub const MAX_LOAD_FILE: usize = 64 * 1024;

fn bad() -> Error {
    Error::Refused(Sw::INCORRECT_DATA)
}

/// LOAD: one block.
pub(crate) fn load(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    ctx.require_auth()?;
    ctx.require_content_change()?;
    // Any refusal below ends the load: take the session out and put it back only on success.
    let mut session = ctx
        .ram
        .load
        .take()
        .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
    if session.completed.is_some() {
        // Combined process: the load file is complete; only the final INSTALL may follow.
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    if cmd.p1 & 0x7F != 0 || u16::from(cmd.p2) != session.next_block {
        return refuse(Sw::INCORRECT_P1P2);
    }
    if session.data.len().saturating_add(cmd.data.len()) > MAX_LOAD_FILE {
        return refuse(Sw::NOT_ENOUGH_MEMORY);
    }
    session.data.extend_from_slice(&cmd.data);
    session.next_block = session.next_block.saturating_add(1);
    if cmd.p1 & 0x80 == 0 {
        if session.next_block > 0xFF {
            return refuse(Sw::INCORRECT_P1P2);
        }
        ctx.ram.load = Some(session);
        return ok(alloc::vec![0x00]);
    }
    let entry = complete(&session, ctx)?;
    if session.combined.is_some() {
        // Checked, not registered: the final INSTALL commits it with its application.
        session.data = Vec::new();
        session.completed = Some(entry);
        ctx.ram.load = Some(session);
        return ok(alloc::vec![0x00]);
    }
    let (elf, sd) = (entry.aid, entry.associated_sd);
    ctx.state.registry.load_files.push(entry);
    crate::quotas::check_registry(ctx.state)?;
    if session.authority == Authority::Delegated {
        // Load receipt (GP C.5.1).
        let mut fields = Vec::new();
        dm::push_aid(&mut fields, &elf);
        dm::push_aid(&mut fields, &sd);
        return ok(dm::confirmation(
            ctx.state,
            session.token_id.as_deref(),
            &fields,
        )?);
    }
    ok(alloc::vec![0x00])
}

/// The key `kvn`/id 1 of security domain `sd`, as the SD's service would use it.
fn sd_key<'a>(state: &'a CardState, sd: &Aid, kvn: u8) -> Result<&'a Key> {
    state
        .domain(sd)
        .and_then(|d| d.sets.iter().find(|s| s.kvn == kvn))
        .and_then(|s| s.key(1))
        .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))
}

/// The SD's DAP verification service: symmetric DAPs over the LFDB hash (GP C.3, B.1.2.2, B.2.2).
fn verify_dap(state: &CardState, sd: &Aid, hash: &[u8], signature: &[u8]) -> Result<()> {
    let key = sd_key(state, sd, DAP_KVN)?;
    let alg = HashAlg::from_output_len(hash.len()).ok_or_else(bad)?;
    let verified = match key.key_type {
        KeyType::Des3 => {
            let k = Des3Key::from_slice(key.value()).map_err(|_| bad())?;
            dap::verify_dap_des3(&k, hash, signature)
        }
        KeyType::Aes => {
            if !alg.acceptable_for(SymmetricKeyKind::Aes(key.len())) {
                return refuse(Sw::INCORRECT_DATA);
            }
            let k = AesKey::from_slice(key.value()).map_err(|_| bad())?;
            dap::verify_dap_aes(&k, hash, signature)
        }
        KeyType::RsaPublic => {
            let (n, e) = key.rsa_parts().ok_or_else(bad)?;
            crate::signatures::verify_rsa(n, e, alg, hash, signature)
        }
        KeyType::EcP256Public => {
            if alg == HashAlg::Sha1 {
                return refuse(Sw::INCORRECT_DATA);
            }
            crate::signatures::verify_ecdsa(key.value(), hash, signature)
        }
    };
    verified.map_err(|e| Error::Refused(e.sw()))
}

/// The SD's load file decryption service (GP C.6): CBC under its key, ICV from `D3`. Returns the
/// clear blocks with their `80 00…` padding still on, and the block size: the caller checks
/// padding and hash together ([`clear_lfdb`]).
fn decrypt_lfdb(
    state: &CardState,
    sd: &Aid,
    icv: Option<&[u8]>,
    data: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, usize)> {
    let key = sd_key(state, sd, LFDB_KVN)?;
    let clear = match key.key_type {
        KeyType::Des3 => {
            let k = Des3Key::from_slice(key.value()).map_err(|_| bad())?;
            dap::decrypt_lfdb_des3_padded(&k, icv, data).map(|c| (c, 8))
        }
        KeyType::Aes => {
            let k = AesKey::from_slice(key.value()).map_err(|_| bad())?;
            dap::decrypt_lfdb_aes_padded(&k, icv, data).map(|c| (c, 16))
        }
        KeyType::RsaPublic | KeyType::EcP256Public => return refuse(Sw::CONDITIONS_NOT_SATISFIED),
    };
    clear.map_err(|_| bad())
}

/// The clear LFDB inside the decrypted blocks `padded` (block size `block`), if its `80 00…`
/// padding is good and its hash equals `expected`. Padding and hash are checked in one pass that
/// does the same work whatever the data: the padding's length is found without branching on
/// the bytes, and the hash is finished for every length the padding could leave (one hash of the
/// prefix, then `block` short finishes), so bad padding and a wrong hash take the same time and
/// give the same answer.
fn clear_lfdb<'a>(padded: &'a [u8], block: usize, expected: &[u8]) -> Option<&'a [u8]> {
    let n = padded.len();
    let first = n.checked_sub(block)?;
    let last_block = padded.get(first..)?;
    // Scan the last block from its end: zeros, then the `80` marker.
    let mut len = 0u64;
    let mut valid = Choice::from(0);
    let mut found = Choice::from(0);
    for (i, b) in last_block.iter().enumerate().rev() {
        let marker = b.ct_eq(&0x80);
        let take = !found & marker;
        len.conditional_assign(&((first + i) as u64), take);
        valid |= take;
        found |= marker | !b.ct_eq(&0);
    }
    let hashed = match expected.len() {
        20 => hash_candidates::<sha1::Sha1>(padded, first, len),
        32 => hash_candidates::<sha2::Sha256>(padded, first, len),
        48 => hash_candidates::<sha2::Sha384>(padded, first, len),
        64 => hash_candidates::<sha2::Sha512>(padded, first, len),
        _ => return None,
    };
    let digest = hashed.get(..expected.len())?;
    let good = valid & digest.ct_eq(expected);
    if bool::from(good) {
        padded.get(..usize::try_from(len).ok()?)
    } else {
        None
    }
}

/// The hash of `data[..len]` for the `len` in `first..data.len()` (zeros when `len` is none of
/// them), computed for every one of those lengths and selected in constant time.
fn hash_candidates<D: Digest + Clone>(data: &[u8], first: usize, len: u64) -> [u8; 64] {
    let mut prefix = D::new();
    prefix.update(data.get(..first).unwrap_or_default());
    let tail = data.get(first..).unwrap_or_default();
    let mut out = [0u8; 64];
    for k in 0..tail.len() {
        let mut h = prefix.clone();
        h.update(tail.get(..k).unwrap_or_default());
        let d = h.finalize();
        let this = len.ct_eq(&((first + k) as u64));
        for (o, b) in out.iter_mut().zip(d.iter()) {
            o.conditional_assign(b, this);
        }
    }
    out
}

/// Check the whole load file and build its registry entry.
///
/// Order matters (GP C.2, C.3, C.6): every DAP is verified over the LFDB hash announced in
/// INSTALL [for load] before the load file data is touched, so a load file that no DAP authority
/// signed is refused (`6982`) without being hashed or decrypted; a ciphered LFDB needs that
/// hash. Only then is a `D4` block decrypted, and from there bad padding, a wrong hash and a load
/// file that does not parse all end the same way: `6A80`.
fn complete(session: &LoadSession, ctx: &mut Ctx<'_>) -> Result<LoadFile> {
    let state = &*ctx.state;
    // The domain the load file is for must still be there (it may have been deleted or locked
    // since INSTALL [for load]): a load file belongs to a domain and passes its DAP checks.
    dm::load_target_accepts(state, &session.sd_aid)?;
    let mut daps: Vec<(Aid, &[u8])> = Vec::new();
    let mut plain: Option<&[u8]> = None;
    let mut icv: Option<&[u8]> = None;
    let mut ciphered: Option<&[u8]> = None;
    for tlv in TlvReader::new(&session.data) {
        let tlv = tlv.map_err(|_| bad())?;
        let body_started = plain.is_some() || icv.is_some() || ciphered.is_some();
        match tlv.tag {
            0xE2 if !body_started => {
                let mut sd = None;
                let mut sig = None;
                for inner in tlv.children() {
                    let inner = inner.map_err(|_| bad())?;
                    match inner.tag {
                        0x4F if sd.is_none() => sd = Some(Aid::new(inner.value).ok_or_else(bad)?),
                        0xC3 if sig.is_none() => sig = Some(inner.value),
                        _ => return refuse(Sw::INCORRECT_DATA),
                    }
                }
                daps.push((sd.ok_or_else(bad)?, sig.ok_or_else(bad)?));
            }
            0xC4 if !body_started => plain = Some(tlv.value),
            0xD3 if !body_started => icv = Some(tlv.value),
            0xD4 if plain.is_none() && ciphered.is_none() => ciphered = Some(tlv.value),
            _ => return refuse(Sw::INCORRECT_DATA),
        }
    }
    let must_cipher = dm::ciphered_required(state, &session.sd_aid);
    match (plain, ciphered) {
        (Some(_), None) if icv.is_none() => {
            if must_cipher {
                return refuse(Sw::CONDITIONS_NOT_SATISFIED);
            }
        }
        (None, Some(_)) => {
            if !must_cipher {
                return refuse(Sw::CONDITIONS_NOT_SATISFIED);
            }
        }
        _ => return refuse(Sw::INCORRECT_DATA),
    }
    let expected = session.lfdb_hash.as_slice();
    let authorities = dm::dap_authorities(state, &session.sd_aid);
    // A ciphered LFDB, or one a DAP authority must sign, is only ever checked against the hash
    // announced in INSTALL [for load]: without one there is nothing to verify first.
    if expected.is_empty() && (ciphered.is_some() || !authorities.is_empty()) {
        return refuse(Sw::INCORRECT_DATA);
    }
    // Every DAP authority verifies its own block over the announced hash, before the LFDB is
    // hashed or decrypted.
    for authority in authorities {
        let Some((_, signature)) = daps.iter().find(|(sd, _)| *sd == authority) else {
            return refuse(Sw::SECURITY_STATUS_NOT_SATISFIED);
        };
        verify_dap(state, &authority, expected, signature)?;
    }
    let decrypted;
    let lfdb: &[u8] = match (plain, ciphered) {
        (Some(p), None) => {
            let matches = match expected.len() {
                0 => true,
                20 => ct_eq(&sha1::Sha1::digest(p), expected),
                32 => ct_eq(&sha2::Sha256::digest(p), expected),
                48 => ct_eq(&sha2::Sha384::digest(p), expected),
                64 => ct_eq(&sha2::Sha512::digest(p), expected),
                _ => false,
            };
            if !matches {
                return refuse(Sw::INCORRECT_DATA);
            }
            p
        }
        (None, Some(c)) => {
            ctx.ram.lfdb_decryptions = ctx.ram.lfdb_decryptions.wrapping_add(1);
            decrypted = decrypt_lfdb(state, &session.sd_aid, icv, c)?;
            let (padded, block) = &decrypted;
            // One answer for bad padding and a wrong hash.
            clear_lfdb(padded, *block, expected).ok_or_else(bad)?
        }
        _ => return refuse(Sw::INCORRECT_DATA),
    };
    let sha256: [u8; 32] = sha2::Sha256::digest(lfdb).into();
    let info = cap::parse_lfdb(lfdb).map_err(|_| bad())?;
    if info.package_aid != session.load_file_aid {
        return refuse(Sw::INCORRECT_DATA);
    }
    let registry = &state.registry;
    for (i, applet) in info.applets.iter().enumerate() {
        let repeated = info.applets.iter().take(i).any(|a| a == applet);
        if repeated || registry.aid_in_use(applet) || *applet == session.load_file_aid {
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
    }
    Ok(LoadFile {
        aid: session.load_file_aid,
        associated_sd: session.sd_aid,
        version: Some(info.version),
        modules: info.applets,
        lfdb_sha256: sha256,
        size: u32::try_from(lfdb.len()).unwrap_or(u32::MAX),
    })
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::aid::ISD_AID;
    use crate::keys::{KeySet, ScpConfig};
    use crate::lifecycle::AppLifeCycle;
    use crate::privileges::Privileges;
    use crate::registry::Application;
    use crate::session::Transient;
    use crate::state::FabSettings;

    const SSD: [u8; 8] = [0xA0, 0, 0, 0x01, 0x51, 0x53, 0x50, 0x09];
    const PACKAGE: [u8; 6] = [0xF0, 0x01, 0x02, 0x03, 0x04, 0x05];
    const APPLET: [u8; 7] = [0xF0, 0x01, 0x02, 0x03, 0x04, 0x05, 0x01];
    const CIPHER_KEY: [u8; 16] = [0x5C; 16];

    /// A fab card state with an SSD that requires ciphered load files (key `74`, no DAP).
    fn state() -> CardState {
        let fab = FabSettings {
            scp: ScpConfig { scp: 3, i: 0x70 },
            kvn: 0x30,
            key: [0x40; 16],
            kdd: [0; 10],
            rng_seed: [3; 16],
        };
        let mut state = CardState::from_fab(&fab).unwrap();
        let mut domain = state.isd.clone();
        domain.sets = alloc::vec![KeySet {
            kvn: LFDB_KVN,
            keys: alloc::vec![Key::new(1, KeyType::Aes, &CIPHER_KEY).unwrap()],
            sequence_counter: 0,
        }];
        let isd = ISD_AID;
        state.registry.applications.push(Application {
            aid: Aid::new(&SSD).unwrap(),
            load_file: isd,
            module: isd,
            life_cycle: AppLifeCycle::PERSONALIZED,
            privileges: Privileges::from_install(&[0x80, 0x00, 0x40]).unwrap(),
            associated_sd: isd,
            install_params: Vec::new(),
            domain: Some(domain),
            app_data: Vec::new(),
            keys: Vec::new(),
        });
        state
    }

    fn ciphered(lfdb: &[u8]) -> Vec<u8> {
        let key = AesKey::from_slice(&CIPHER_KEY).unwrap();
        let mut body = Vec::new();
        gp_core::tlv::write_tlv(&mut body, 0xD4, &dap::encrypt_lfdb_aes(&key, None, lfdb));
        body
    }

    fn session(hash: Vec<u8>, data: Vec<u8>) -> LoadSession {
        LoadSession {
            load_file_aid: Aid::new(&PACKAGE).unwrap(),
            sd_aid: Aid::new(&SSD).unwrap(),
            lfdb_hash: hash,
            next_block: 1,
            data,
            authority: Authority::Issuer,
            token_id: None,
            combined: None,
            completed: None,
        }
    }

    fn run(state: &mut CardState, ram: &mut Transient, s: &LoadSession) -> Result<LoadFile> {
        let mut ctx = Ctx {
            state,
            ram,
            auth: None,
            sd: ISD_AID,
        };
        complete(s, &mut ctx)
    }

    #[test]
    fn ciphered_lfdb_needs_the_announced_hash() {
        let lfdb = cap::synthetic_lfdb(&PACKAGE, [1, 0], &[&APPLET]);
        let mut state = state();
        let mut ram = Transient::default();
        // No hash from INSTALL [for load]: refused before the decryption service runs.
        let r = run(&mut state, &mut ram, &session(Vec::new(), ciphered(&lfdb)));
        assert!(matches!(r, Err(Error::Refused(Sw::INCORRECT_DATA))));
        assert_eq!(ram.lfdb_decryptions, 0);
        // With it, the same load file completes.
        let hash = sha2::Sha256::digest(&lfdb).to_vec();
        let entry = run(&mut state, &mut ram, &session(hash, ciphered(&lfdb))).unwrap();
        assert_eq!(ram.lfdb_decryptions, 1);
        assert_eq!(
            entry.lfdb_sha256.as_slice(),
            sha2::Sha256::digest(&lfdb).as_slice()
        );
        assert_eq!(entry.size as usize, lfdb.len());
    }

    #[test]
    fn padding_and_hash_give_one_answer() {
        let hash = |d: &[u8]| sha2::Sha256::digest(d).to_vec();
        for len in 0..40usize {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for block in [8usize, 16] {
                let mut padded = data.clone();
                padded.push(0x80);
                while padded.len() % block != 0 {
                    padded.push(0);
                }
                assert_eq!(
                    clear_lfdb(&padded, block, &hash(&data)),
                    Some(data.as_slice())
                );
                // Wrong hash, or bad padding with the right hash: both None.
                assert_eq!(clear_lfdb(&padded, block, &hash(b"other")), None);
                let n = padded.len();
                let mut no_marker = padded.clone();
                no_marker[len] = 0x00;
                assert_eq!(clear_lfdb(&no_marker, block, &hash(&data)), None);
                let mut trailing = padded.clone();
                trailing[n - 1] ^= 0x01;
                if len + 1 != n {
                    assert_eq!(clear_lfdb(&trailing, block, &hash(&data)), None);
                }
                // The other hash lengths.
                let sha1 = sha1::Sha1::digest(&data).to_vec();
                let sha512 = sha2::Sha512::digest(&data).to_vec();
                assert_eq!(clear_lfdb(&padded, block, &sha1), Some(data.as_slice()));
                assert_eq!(clear_lfdb(&padded, block, &sha512), Some(data.as_slice()));
            }
        }
        // A whole block of padding is too much; nothing at all is malformed.
        let mut padded = alloc::vec![1u8; 16];
        padded.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            clear_lfdb(&padded, 16, &hash(&[1u8; 16])),
            Some(&[1u8; 16][..])
        );
        assert_eq!(clear_lfdb(&padded[..16], 16, &hash(&[1u8; 15])), None);
        assert_eq!(clear_lfdb(&[], 16, &hash(&[])), None);
        let zeros = [0u8; 32];
        assert_eq!(clear_lfdb(&zeros, 16, &hash(&zeros[..16])), None);
    }
}
