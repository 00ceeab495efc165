//! What the server asks of a card, command by command: identifying it (first script), installing a
//! campaign's package on it, and auditing a card whose outcome is unknown. Everything is built from the
//! package exactly as `signer deploy` builds it (the signer library's own command builders).

use crate::error::Error;
use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::commands::{self, parse_get_status_response_for, InstallForInstall, GET_STATUS_TLV};
use signer::channel::ISD_AID;
use signer::gp::{LoadOptions, LoadRequest};
use signer::package::Package;

/// GET DATA tag of the Card Production Life Cycle data, which the first script reads for the log.
pub const CPLC_TAG: u16 = 0x9F7F;
/// The key version number asked for in INITIALIZE UPDATE: 0, the card's default key set.
pub const KVN: u8 = 0x00;

/// The first script: SELECT the ISD, GET DATA (CPLC), INITIALIZE UPDATE with the host challenge.
pub fn identify(host_challenge: &[u8; 8]) -> Vec<CommandApdu> {
    vec![
        commands::select_by_aid(&ISD_AID),
        commands::get_data(CPLC_TAG),
        commands::initialize_update(KVN, host_challenge),
    ]
}

/// The package's operation for one card, as plain commands with their names.
#[derive(Debug, Clone)]
pub struct Operation {
    /// The load file's AID.
    pub load_file_aid: Vec<u8>,
    /// The applets' AIDs, installed in this order.
    pub applets: Vec<Vec<u8>>,
    /// The load request (LFDB or ciphered LFDB, hash, applets).
    pub request: LoadRequest,
    /// Security domain, DAP blocks for this card, ciphered LFDB.
    pub options: LoadOptions,
    /// Privileges of the installed applications (1 or 3 bytes).
    pub privileges: Vec<u8>,
    /// Install parameters field of INSTALL [for install] (`C9 len …` and any further objects).
    pub install_parameters: Vec<u8>,
}

/// What a campaign says about installing: the security domain and the applications' privileges and
/// install parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallSettings {
    /// The security domain the load file is associated with (the ISD when `None`).
    pub sd_aid: Option<Vec<u8>>,
    /// Privileges, 1 or 3 bytes.
    pub privileges: Vec<u8>,
    /// Install parameters.
    pub install_parameters: Vec<u8>,
}

impl Default for InstallSettings {
    /// The card domain, no privileges, empty application-specific parameters (`C9 00`), as
    /// `signer deploy` installs.
    fn default() -> Self {
        InstallSettings {
            sd_aid: None,
            privileges: vec![0x00],
            install_parameters: vec![0xC9, 0x00],
        }
    }
}

impl Operation {
    /// Reads what `signer deploy` would send to the card with `kdd`: fails when the package has no DAP
    /// for this card (the card would refuse the load) or its commands cannot be built.
    pub fn for_card(
        pkg: &Package,
        kdd: &[u8; 10],
        settings: &InstallSettings,
    ) -> Result<Operation, Error> {
        let applets = pkg.applets()?;
        let ciphered = match &pkg.manifest.cipher {
            Some(c) => Some((
                hex::decode(&c.icv)
                    .map_err(|_| Error::Usage("package manifest.cipher.icv is not hex".into()))?,
                pkg.ciphered_bytes()?,
            )),
            None => None,
        };
        let request = LoadRequest {
            load_file_aid: pkg.load_file_aid()?,
            lfdb: if ciphered.is_some() {
                Vec::new()
            } else {
                pkg.lfdb_bytes()?
            },
            lfdb_hash: pkg.lfdb_hash()?,
            applets: applets.iter().map(|a| (a.clone(), a.clone())).collect(),
        };
        let options = LoadOptions {
            sd_aid: settings.sd_aid.clone(),
            dap_blocks: pkg.dap_blocks_for(kdd)?,
            ciphered,
        };
        let op = Operation {
            load_file_aid: request.load_file_aid.clone(),
            applets,
            request,
            options,
            privileges: settings.privileges.clone(),
            install_parameters: settings.install_parameters.clone(),
        };
        // Every command is built once here, so a package that cannot make them (a load file too large
        // for 256 LOAD blocks, an AID that does not fit) fails the card before anything is sent.
        op.full()?;
        Ok(op)
    }

    /// INSTALL [for load], LOAD…, INSTALL [for install and make selectable]… with their names.
    pub fn full(&self) -> Result<Vec<(String, CommandApdu)>, Error> {
        let mut out = signer::gp::load_commands(&self.request, &self.options)?;
        out.extend(self.installs_from(0)?);
        Ok(out)
    }

    /// INSTALL [for install and make selectable] of the applets from index `from` on, with the
    /// campaign's privileges and install parameters.
    pub fn installs_from(&self, from: usize) -> Result<Vec<(String, CommandApdu)>, Error> {
        let mut out = Vec::new();
        for applet in self.applets.iter().skip(from) {
            let install = InstallForInstall {
                load_file_aid: self.load_file_aid.clone(),
                module_aid: applet.clone(),
                application_aid: applet.clone(),
                privileges: self.privileges.clone(),
                install_parameters: self.install_parameters.clone(),
                token: Vec::new(),
                make_selectable: true,
            };
            let cmd = install
                .to_apdu()
                .map_err(|e| Error::Card(format!("INSTALL [for install]: {e}")))?;
            out.push(("INSTALL [for install and make selectable]".to_string(), cmd));
        }
        Ok(out)
    }

    /// The audit: GET STATUS of the load file, then of each applet in install order. The card stops at
    /// the first `6A88` (not found), and since the operation creates them in this order, everything after
    /// the first missing one is missing too.
    pub fn audit(&self) -> Vec<(String, CommandApdu)> {
        let mut out = vec![(
            "GET STATUS (load file)".to_string(),
            commands::get_status(0x20, false, &self.load_file_aid),
        )];
        for a in &self.applets {
            out.push((
                "GET STATUS (application)".to_string(),
                commands::get_status(0x40, false, a),
            ));
        }
        out
    }

    /// Reads the audit's (verified, unwrapped) responses: how much of the operation the card holds.
    pub fn audit_result(&self, responses: &[ResponseApdu]) -> Result<Held, Error> {
        let mut present = 0usize;
        let wanted = std::iter::once((0x20u8, &self.load_file_aid))
            .chain(self.applets.iter().map(|a| (0x40u8, a)));
        for ((p1, aid), resp) in wanted.zip(responses) {
            let found = match resp.sw {
                0x9000 | 0x6310 => parse_get_status_response_for(p1, GET_STATUS_TLV, &resp.data)
                    .map_err(|e| Error::Card(format!("malformed GET STATUS response: {e}")))?
                    .iter()
                    .any(|e| &e.aid == aid),
                0x6A88 => false,
                sw => {
                    return Err(Error::Card(format!(
                        "GET STATUS answered {sw:04X} during the audit"
                    )))
                }
            };
            if !found {
                return Ok(match present {
                    0 => Held::Nothing,
                    n => Held::LoadFileAnd(n - 1),
                });
            }
            present += 1;
        }
        if present < 1 + self.applets.len() {
            return Err(Error::Card(
                "the audit stopped before it found what the card holds".into(),
            ));
        }
        Ok(Held::Everything)
    }
}

/// How much of an operation a card holds, as the audit found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// No load file (a load cut short leaves nothing: the card drops it on reset).
    Nothing,
    /// The load file and the first `n` applets (fewer than all).
    LoadFileAnd(usize),
    /// The load file and every applet.
    Everything,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const LF: [u8; 8] = [0xA0, 0, 0, 0x06, 0x47, 0x50, 0x49, 0x01];

    fn op() -> Operation {
        let applets = vec![[&LF[..], &[1]].concat(), [&LF[..], &[2]].concat()];
        Operation {
            load_file_aid: LF.to_vec(),
            applets: applets.clone(),
            request: LoadRequest {
                load_file_aid: LF.to_vec(),
                lfdb: vec![0xC4, 0x00],
                lfdb_hash: vec![0; 32],
                applets: applets.iter().map(|a| (a.clone(), a.clone())).collect(),
            },
            options: LoadOptions::default(),
            privileges: vec![0],
            install_parameters: vec![0xC9, 0],
        }
    }

    /// A GET STATUS (TLV) answer with one entry `E3 { 4F aid, 9F70 07 }`.
    fn found(aid: &[u8]) -> ResponseApdu {
        let mut e3 = gp_core::tlv::tlv(0x4F, aid);
        e3.extend(gp_core::tlv::tlv(0x9F70, &[0x07]));
        ResponseApdu {
            data: gp_core::tlv::tlv(0xE3, &e3),
            sw: 0x9000,
        }
    }

    fn sw(sw: u16) -> ResponseApdu {
        ResponseApdu {
            data: Vec::new(),
            sw,
        }
    }

    #[test]
    fn the_audit_reads_what_the_card_holds() {
        let op = op();
        let [a1, a2] = [op.applets[0].clone(), op.applets[1].clone()];
        assert_eq!(op.audit().len(), 3);
        assert_eq!(op.audit_result(&[sw(0x6A88)]).unwrap(), Held::Nothing);
        assert_eq!(
            op.audit_result(&[found(&LF), sw(0x6A88)]).unwrap(),
            Held::LoadFileAnd(0)
        );
        assert_eq!(
            op.audit_result(&[found(&LF), found(&a1), sw(0x6A88)])
                .unwrap(),
            Held::LoadFileAnd(1)
        );
        assert_eq!(
            op.audit_result(&[found(&LF), found(&a1), found(&a2)])
                .unwrap(),
            Held::Everything
        );
        // An entry for another AID (the search criterion matches prefixes) is not the one wanted.
        assert_eq!(op.audit_result(&[found(&a1)]).unwrap(), Held::Nothing);
        // A refusal, a garbage answer, or an audit cut short is an error, never a guess.
        assert!(op.audit_result(&[sw(0x6982)]).is_err());
        assert!(op
            .audit_result(&[ResponseApdu {
                data: vec![0xE3, 0x05, 0x4F],
                sw: 0x9000
            }])
            .is_err());
        assert!(op.audit_result(&[found(&LF), found(&a1)]).is_err());
        // Only the missing installs are sent when the load file is there.
        assert_eq!(op.installs_from(1).unwrap().len(), 1);
        assert_eq!(op.full().unwrap().len(), 1 + 1 + 2);
    }
}
