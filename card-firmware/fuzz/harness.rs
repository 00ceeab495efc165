//! The APDU-sequence harness shared by the libFuzzer target (`fuzz_targets/apdu_sequences.rs`)
//! and the libFuzzer-free replay test (`card-firmware/tests/fuzz_replay.rs`).
//!
//! The fuzz input is a small program for a terminal. The harness holds the *host* side of the
//! secure channel (gp-core's SCP03 or SCP02 session with the card's known keys), so fuzzed
//! commands can be sent with a valid C-MAC and C-DEC at any security level: the fuzzer gets past
//! the MACs into every handler without any test-only switch in the card itself.
//!
//! Input: byte 0 picks the card (b1: SCP02 i=55 instead of SCP03 i=70) and the first session's
//! level; then operations until the input ends (at most [`MAX_OPS`]):
//!
//! | op % 8 | operands | what |
//! |---|---|---|
//! | 0 | len, bytes | raw APDU bytes, as they come |
//! | 1 | ins, p1, p2, len, data | a GP command (`80`, Le `00` when op b4), wrapped by the session |
//! | 2 | index, position, xor | a valid command from [`templates`], one byte flipped, wrapped |
//! | 3 | level, who | SELECT (ISD or an SSD) and authenticate with transport or issuer keys |
//! | 4 | - | power cycle: the card must come back with exactly its committed state |
//! | 5 | n, torn | cut power after n writes of the next command, then power on: recovery must succeed |
//! | 6 | - | warm reset |
//! | 7 | index | SELECT an application (purse, loaded applet, SSD, unknown) |
//!
//! Checked after every APDU: no panic; the response has a status word; a refused command leaves
//! the committed state unchanged (except EXTERNAL AUTHENTICATE, which counts the failure first,
//! and the purse's CREDIT, which counts bad MACs); a `9000`/`6310` answer to a command wrapped at
//! an R-MAC level verifies on the host; a power cycle keeps the committed state.
#![allow(dead_code)]

use card_firmware::aid::ISD_AID;
use card_firmware::keys::ScpConfig;
use card_firmware::state::{CardState, FabSettings};
use card_firmware::storage::RamStorage;
use card_firmware::Card;
use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::keys::{AesKey, Des3Key};
use gp_core::{scp02, scp03};

/// Most operations one input runs (keeps each run short for the fuzzer).
pub const MAX_OPS: usize = 96;

const K: [u8; 16] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,
];
const ISSUER_KEY: [u8; 16] = [0x11; 16];
const ISSUER_KVN: u8 = 0x01;
const PACKAGE: [u8; 5] = [0xD0, 0xD1, 0xD2, 0xD3, 0xD4];
const APPLET: [u8; 8] = [0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0x01, 0x01, 0x01];
const SD_PACKAGE: [u8; 7] = [0xA0, 0, 0, 0x01, 0x51, 0x53, 0x50];
const SD_MODULE: [u8; 8] = [0xA0, 0, 0, 0x01, 0x51, 0x53, 0x50, 0x41];
const SSD_AM: [u8; 10] = [0xA0, 0, 0, 0x01, 0x51, 0x53, 0x50, 0x41, 0x00, 0x01];
const SSD_DM: [u8; 10] = [0xA0, 0, 0, 0x01, 0x51, 0x53, 0x50, 0x41, 0x00, 0x02];
const PURSE_PACKAGE: [u8; 6] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45];
const PURSE_MODULE: [u8; 7] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01];
const PURSE: [u8; 8] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01, 0x01];
const LEVELS03: [u8; 6] = [0x00, 0x01, 0x03, 0x11, 0x13, 0x33];
const LEVELS02: [u8; 5] = [0x00, 0x01, 0x03, 0x11, 0x13];

/// The host side of the secure channel.
enum Host {
    None,
    V03 {
        session: scp03::Session,
        /// Static DEK of the key set that authenticated (PUT KEY encrypts under it).
        dek: [u8; 16],
        rmac: bool,
    },
    V02 {
        session: scp02::Session,
        rmac: bool,
    },
}

impl Host {
    /// The wire bytes of `cmd`, and whether the session protected them. A command the session
    /// cannot wrap (too long once padded, or the host session aborted) goes out plain.
    fn wrap(&mut self, cmd: &CommandApdu) -> (Vec<u8>, bool) {
        let wrapped = match self {
            Host::None => None,
            Host::V03 { session, .. } => session.wrap(cmd).map(|c| c.to_bytes()).ok(),
            Host::V02 { session, .. } => session.wrap(cmd).map(|c| c.to_bytes()).ok(),
        };
        match wrapped {
            Some(bytes) => (bytes, true),
            None => (cmd.to_bytes(), false),
        }
    }
    fn rmac(&self) -> bool {
        match self {
            Host::None => false,
            Host::V03 { rmac, .. } | Host::V02 { rmac, .. } => *rmac,
        }
    }
    /// Verify (and decrypt) a successful response; `false` if it does not verify.
    fn unwrap(&mut self, resp: &ResponseApdu) -> bool {
        match self {
            Host::None => true,
            Host::V03 { session, .. } => session.unwrap_response(resp).is_ok(),
            Host::V02 { session, .. } => session.unwrap_response(resp).is_ok(),
        }
    }
    /// PUT KEY data for the issuer key set (KVN 01, ENC = MAC = DEK = 11..11), replacing `old`.
    fn put_issuer_keys(&self) -> Option<Vec<u8>> {
        let mut data = vec![ISSUER_KVN];
        match self {
            Host::None => return None,
            Host::V03 { dek, .. } => {
                let dek = AesKey::from_slice(dek).ok()?;
                let key = AesKey::from_slice(&ISSUER_KEY).ok()?;
                for _ in 0..3 {
                    data.extend_from_slice(&scp03::put_key_data(&dek, &key).to_bytes().ok()?);
                }
            }
            Host::V02 { session, .. } => {
                let key = Des3Key::from_slice(&ISSUER_KEY).ok()?;
                for _ in 0..3 {
                    let kd = scp02::put_key_data(&session.keys().dek, &key);
                    data.extend_from_slice(&kd.to_bytes().ok()?);
                }
            }
        }
        Some(data)
    }
}

/// Reads the fuzz input; past its end every read is zero and `done` turns true.
struct Input<'a> {
    bytes: &'a [u8],
    done: bool,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((b, rest)) => {
                self.bytes = rest;
                *b
            }
            None => {
                self.done = true;
                0
            }
        }
    }
    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.bytes.len());
        let (h, t) = self.bytes.split_at(n);
        self.bytes = t;
        h.to_vec()
    }
}

fn cmd(ins: u8, p1: u8, p2: u8, data: &[u8]) -> CommandApdu {
    CommandApdu::new(0x80, ins, p1, p2, data.to_vec(), Some(256))
}

fn lv(out: &mut Vec<u8>, v: &[u8]) {
    out.push(v.len() as u8);
    out.extend_from_slice(v);
}

/// The synthetic package the templates load, with its three LOAD commands.
fn package() -> (Vec<u8>, Vec<CommandApdu>) {
    let mut lfdb = card_firmware::cap::synthetic_lfdb(&PACKAGE, [1, 0], &[&APPLET]);
    // A small Method component, so the file takes three blocks (and stays under 128 bytes).
    let filler = 120 - 3 - lfdb.len();
    lfdb.push(0x07);
    lfdb.extend_from_slice(&(filler as u16).to_be_bytes());
    lfdb.extend(std::iter::repeat_n(0x5A, filler));
    let mut file = vec![0xC4, lfdb.len() as u8];
    file.extend_from_slice(&lfdb);
    let chunks: Vec<&[u8]> = file.chunks(48).collect();
    let n = chunks.len();
    let loads = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| cmd(0xE8, if i + 1 == n { 0x80 } else { 0 }, i as u8, c))
        .collect();
    (lfdb, loads)
}

fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

fn delete(aid: &[u8], related: bool) -> CommandApdu {
    let mut d = vec![0x4F];
    lv(&mut d, aid);
    cmd(0xE4, 0x00, if related { 0x80 } else { 0x00 }, &d)
}

/// The issuer's token key (ISD KVN 70), put by operation 3, and what tokens are computed with.
const TOKEN_KEY: [u8; 16] = [0x70; 16];
/// An application key (KVN 40) the purse is given, put by operation 3.
const PURSE_KEY: [u8; 16] = [0x2B; 16];
/// The issuer's receipt key (ISD KVN 71), put by operation 3.
const RECEIPT_KEY: [u8; 16] = [0x71; 16];

/// `body ‖ len ‖ token`, the token an AES-CMAC under [`TOKEN_KEY`] over `P1 P2 len body`
/// (GP C.4), or empty.
fn with_token(p1: u8, p2: u8, body: &[u8], signed: bool) -> Vec<u8> {
    let mut d = body.to_vec();
    if signed {
        let mut input = vec![p1, p2, body.len() as u8];
        input.extend_from_slice(body);
        let key = AesKey::from_slice(&TOKEN_KEY).expect("AES-128 key");
        lv(&mut d, &gp_core::dap::dap_aes(&key, &input));
    } else {
        d.push(0);
    }
    d
}

/// Valid commands, by name, that reach deep states (a fuzzer rarely finds a SHA-256 or a token
/// by itself): operation 2 sends them with one byte flipped, the seeds in a sensible order.
pub fn templates() -> Vec<(&'static str, CommandApdu)> {
    let (lfdb, loads) = package();
    let hash = sha256(&lfdb);
    let load_body = |sd: &[u8]| {
        let mut d = Vec::new();
        lv(&mut d, &PACKAGE);
        lv(&mut d, sd);
        lv(&mut d, &hash);
        d.push(0);
        d
    };
    let install_body = |elf: &[u8], module: &[u8], app: &[u8], privileges: &[u8]| {
        let mut d = Vec::new();
        lv(&mut d, elf);
        lv(&mut d, module);
        lv(&mut d, app);
        lv(&mut d, privileges);
        d.extend_from_slice(&[0x02, 0xC9, 0x00]);
        d
    };
    let install = |elf: &[u8], module: &[u8], app: &[u8], privileges: &[u8]| {
        with_token(0, 0, &install_body(elf, module, app, privileges), false)
    };
    let mut t: Vec<(&'static str, CommandApdu)> = vec![
        (
            "load",
            cmd(0xE6, 0x02, 0x00, &with_token(2, 0, &load_body(&[]), false)),
        ),
        (
            "combined-first",
            cmd(
                0xE6,
                0x0E,
                0x01,
                &with_token(0x0E, 1, &load_body(&[]), false),
            ),
        ),
    ];
    for (i, l) in loads.iter().enumerate() {
        t.push((
            ["block-0", "block-1", "block-2", "block-3"][i.min(3)],
            l.clone(),
        ));
    }
    let applet = install(&PACKAGE, &APPLET, &APPLET, &[0x00]);
    let dm_install_body = install_body(&PACKAGE, &APPLET, &APPLET, &[0x00]);
    let mut del_package = vec![0x4F];
    lv(&mut del_package, &PACKAGE);
    let mut dm_delete = del_package.clone();
    {
        let mut input = vec![0x00, 0x80, del_package.len() as u8];
        input.extend_from_slice(&del_package);
        let key = AesKey::from_slice(&TOKEN_KEY).expect("AES-128 key");
        gp_core::tlv::write_tlv(&mut dm_delete, 0x9E, &gp_core::dap::dap_aes(&key, &input));
    }
    t.extend([
        ("install-selectable", cmd(0xE6, 0x0C, 0x00, &applet)),
        ("install", cmd(0xE6, 0x04, 0x00, &applet)),
        ("combined-final", cmd(0xE6, 0x0E, 0x03, &applet)),
        (
            "make-selectable",
            cmd(0xE6, 0x08, 0x00, &{
                let mut d = vec![0, 0];
                lv(&mut d, &APPLET);
                d.extend_from_slice(&[1, 0, 0, 0]);
                d
            }),
        ),
        ("delete-package-related", delete(&PACKAGE, true)),
        ("delete-package", delete(&PACKAGE, false)),
        ("delete-applet", delete(&APPLET, false)),
        // Security domains with Authorized / Delegated Management.
        (
            "install-ssd-am",
            cmd(
                0xE6,
                0x0C,
                0x00,
                &install(&SD_PACKAGE, &SD_MODULE, &SSD_AM, &[0x80, 0x40, 0x00]),
            ),
        ),
        (
            "install-ssd-dm",
            cmd(
                0xE6,
                0x0C,
                0x00,
                &install(&SD_PACKAGE, &SD_MODULE, &SSD_DM, &[0xA0, 0x00, 0x00]),
            ),
        ),
        ("delete-ssd-am", delete(&SSD_AM, false)),
        // Delegated management by SSD_DM (tokens under TOKEN_KEY).
        (
            "dm-load",
            cmd(0xE6, 0x02, 0x00, &with_token(2, 0, &load_body(&[]), true)),
        ),
        (
            "dm-install",
            cmd(
                0xE6,
                0x0C,
                0x00,
                &with_token(0x0C, 0, &dm_install_body, true),
            ),
        ),
        ("dm-delete", cmd(0xE4, 0x00, 0x80, &dm_delete)),
        // The purse, personalised through the ISD.
        (
            "install-purse",
            cmd(
                0xE6,
                0x0C,
                0x00,
                &install(&PURSE_PACKAGE, &PURSE_MODULE, &PURSE, &[0x10]),
            ),
        ),
        (
            "perso-purse",
            cmd(0xE6, 0x20, 0x00, &{
                let mut d = vec![0, 0];
                lv(&mut d, &PURSE);
                d.extend_from_slice(&[0, 0, 0]);
                d
            }),
        ),
        (
            "store-purse",
            cmd(
                0xE2,
                0x90,
                0x00,
                &[
                    0xDF, 0x01, 0x04, 0, 0, 0x03, 0xE8, 0xDF, 0x02, 0x04, 0, 0, 0, 100, 0xDF, 0x03,
                    0x02, 0x40, 0x01,
                ],
            ),
        ),
        // Life cycles and registry.
        ("card-initialized", cmd(0xF0, 0x80, 0x07, &[])),
        ("card-secured", cmd(0xF0, 0x80, 0x0F, &[])),
        ("card-lock", cmd(0xF0, 0x80, 0x7F, &[])),
        ("lock-applet", cmd(0xF0, 0x40, 0x80, &APPLET)),
        ("unlock-applet", cmd(0xF0, 0x40, 0x00, &APPLET)),
        ("lock-ssd-am-tree", cmd(0xF0, 0x60, 0x80, &SSD_AM)),
        (
            "extradite-purse",
            cmd(0xE6, 0x10, 0x00, &{
                let mut d = Vec::new();
                lv(&mut d, &SSD_AM);
                d.push(0);
                lv(&mut d, &PURSE);
                d.extend_from_slice(&[0, 0, 0]);
                d
            }),
        ),
        (
            "registry-update",
            cmd(0xE6, 0x40, 0x00, &{
                let mut d = vec![0, 0];
                lv(&mut d, &PURSE);
                d.extend_from_slice(&[1, 0x18, 0, 0]);
                d
            }),
        ),
        // Audits and data.
        ("status-apps", cmd(0xF2, 0x40, 0x02, &[0x4F, 0x00])),
        ("status-apps-next", cmd(0xF2, 0x40, 0x03, &[0x4F, 0x00])),
        ("status-files", cmd(0xF2, 0x20, 0x00, &[0x4F, 0x00])),
        ("status-modules", cmd(0xF2, 0x10, 0x02, &[0x4F, 0x00])),
        ("status-isd", cmd(0xF2, 0x80, 0x02, &[0x4F, 0x00])),
        ("data-keys", cmd(0xCA, 0x00, 0xE0, &[])),
        ("data-card", cmd(0xCA, 0x00, 0x66, &[])),
        ("data-capabilities", cmd(0xCA, 0x00, 0x67, &[])),
        ("data-applications", cmd(0xCA, 0x2F, 0x00, &[0x5C, 0x00])),
        ("data-counter", cmd(0xCA, 0x00, 0xC2, &[])),
        ("data-cplc", cmd(0xCA, 0x9F, 0x7F, &[])),
        (
            "store-iin-cin",
            cmd(0xE2, 0x90, 0x00, &[0x42, 0x03, 1, 2, 3, 0x45, 0x02, 4, 5]),
        ),
        // Key deletion.
        (
            "delete-transport-keys",
            cmd(0xE4, 0x00, 0x00, &[0xD2, 0x01, 0x30]),
        ),
        (
            "delete-token-key",
            cmd(0xE4, 0x00, 0x00, &[0xD0, 0x01, 0x01, 0xD2, 0x01, 0x70]),
        ),
        ("delete-key-3", cmd(0xE4, 0x00, 0x00, &[0xD0, 0x01, 0x03])),
    ]);
    t
}

/// Applications the harness selects by AID (op 7).
const SELECTABLE: [&[u8]; 6] = [
    &PURSE,
    &APPLET,
    &SSD_AM,
    &SSD_DM,
    &[0xA0, 0, 0, 0x01, 0x51],
    &[0x01, 2, 3, 4, 5],
];

struct Run {
    card: Option<Card<RamStorage>>,
    host: Host,
    scp02: bool,
    templates: Vec<(&'static str, CommandApdu)>,
    /// `CARD_FUZZ_TRACE` set: print every APDU and status word (to debug a failing input).
    trace: bool,
}

fn sw_of(resp: &[u8]) -> u16 {
    match resp {
        [.., a, b] => u16::from_be_bytes([*a, *b]),
        _ => panic!("response without a status word: {resp:02X?}"),
    }
}

impl Run {
    fn card(&mut self) -> &mut Card<RamStorage> {
        self.card
            .as_mut()
            .expect("the card is always present between operations")
    }

    /// One APDU, with the invariants that hold for every command.
    fn transmit(&mut self, apdu: &[u8]) -> Vec<u8> {
        let before: CardState = self.card().state().clone();
        let resp = self.card().process(apdu);
        let sw = sw_of(&resp);
        if self.trace {
            eprintln!("{apdu:02X?} -> {sw:04X}");
        }
        let accepted = matches!(sw, 0x9000 | 0x6310) || sw >> 8 == 0x61;
        let ins = apdu.get(1).copied();
        let counted = matches!(ins, Some(0x82) | Some(0x52));
        if !accepted && !counted && !self.card().is_dead() {
            assert!(
                self.card().state() == &before,
                "refused {apdu:02X?} -> {sw:04X} changed the committed state"
            );
        }
        resp
    }

    /// A command through the host session; checks the response protection when it succeeded.
    fn send(&mut self, cmd: &CommandApdu) {
        let (wire, wrapped) = self.host.wrap(cmd);
        let mut resp = self.transmit(&wire);
        // Collect a chained response before checking its R-MAC.
        let mut guard = 0;
        while sw_of(&resp) >> 8 == 0x61 && guard < 300 {
            guard += 1;
            resp.truncate(resp.len() - 2);
            let more = self.transmit(&[0x00, 0xC0, 0x00, 0x00, 0x00]);
            resp.extend_from_slice(&more);
        }
        let sw = sw_of(&resp);
        if wrapped && self.host.rmac() && !self.card().is_dead() {
            // Every response goes through the host session (SCP02 MACs errors too, and the
            // R-MAC chain must stay in step); a successful one must verify.
            let parsed = ResponseApdu::parse(&resp).expect("a response with a status word");
            let verified = self.host.unwrap(&parsed);
            assert!(
                verified || !(sw == 0x9000 || sw == 0x6310),
                "the response to {cmd:02X?} does not verify under the session"
            );
        }
    }

    fn select(&mut self, aid: &[u8]) -> u16 {
        self.host = Host::None;
        let mut apdu = vec![0x00, 0xA4, 0x04, 0x00, aid.len() as u8];
        apdu.extend_from_slice(aid);
        apdu.push(0x00);
        sw_of(&self.transmit(&apdu))
    }

    /// INITIALIZE UPDATE + EXTERNAL AUTHENTICATE with the given static keys.
    fn authenticate(&mut self, level_index: u8, issuer: bool) {
        self.host = Host::None;
        let (kvn, key) = if issuer {
            (ISSUER_KVN, ISSUER_KEY)
        } else if self.scp02 {
            (0x20, K)
        } else {
            (0x30, K)
        };
        let hc = [0xA5, 1, 2, 3, 4, 5, 6, level_index];
        let mut iu = vec![0x80, 0x50, kvn, 0x00, 0x08];
        iu.extend_from_slice(&hc);
        iu.push(0x00);
        let resp = self.transmit(&iu);
        if sw_of(&resp) != 0x9000 {
            return;
        }
        let body = &resp[..resp.len() - 2];
        if self.scp02 {
            let Ok(iur) = scp02::InitializeUpdateResponse::parse(body) else {
                panic!("INITIALIZE UPDATE answered 9000 with {body:02X?}");
            };
            let [mut e, mut m, mut d] = [key; 3].map(Des3Key::new);
            let Ok(sk) = scp02::derive_session_keys(&mut e, &mut m, &mut d, iur.sequence_counter)
            else {
                return;
            };
            let level = LEVELS02[usize::from(level_index) % LEVELS02.len()];
            let hcg = scp02::host_cryptogram(&sk, &hc, iur.sequence_counter, &iur.card_challenge);
            let Some(level) = scp02::SecurityLevel::parse_scp02(level) else {
                return;
            };
            let Ok(mut session) = scp02::Session::host(sk, level) else {
                return;
            };
            let ea = session.external_authenticate(&hcg).to_bytes();
            if sw_of(&self.transmit(&ea)) == 0x9000 {
                self.host = Host::V02 {
                    session,
                    rmac: level.r_mac(),
                };
            }
        } else {
            let Ok(iur) = scp03::InitializeUpdateResponse::parse(body) else {
                panic!("INITIALIZE UPDATE answered 9000 with {body:02X?}");
            };
            let (Ok(mut enc), Ok(mut mac)) = (AesKey::from_slice(&key), AesKey::from_slice(&key))
            else {
                return;
            };
            let Ok(sk) =
                scp03::derive_session_keys(&mut enc, &mut mac, 16, &hc, &iur.card_challenge)
            else {
                return;
            };
            let hcg = scp03::host_cryptogram(&sk, &hc, &iur.card_challenge);
            let level = LEVELS03[usize::from(level_index) % LEVELS03.len()];
            let Some(level) = scp03::SecurityLevel::parse(level) else {
                return;
            };
            let mut session = scp03::Session::host(sk, level);
            let ea = session.external_authenticate(&hcg).to_bytes();
            if sw_of(&self.transmit(&ea)) == 0x9000 {
                self.host = Host::V03 {
                    session,
                    dek: key,
                    rmac: level.r_mac(),
                };
            }
        }
    }

    /// Power off and on: RAM is gone, the committed state is all there is.
    fn power_cycle(&mut self) {
        let card = self.card.take().expect("card present");
        let state = card.state().clone();
        let dead = card.is_dead();
        let mut storage = card.into_storage();
        storage.restore_power();
        let card = Card::boot(storage).expect("a card always powers on");
        if !dead {
            assert!(
                card.state() == &state,
                "a power cycle changed the committed state"
            );
        }
        self.card = Some(card);
        self.host = Host::None;
    }

    fn op(&mut self, input: &mut Input<'_>) {
        let op = input.byte();
        match op % 8 {
            0 => {
                let n = usize::from(input.byte());
                let bytes = input.take(n);
                self.transmit(&bytes);
            }
            1 => {
                let (ins, p1, p2) = (input.byte(), input.byte(), input.byte());
                let n = usize::from(input.byte());
                let data = input.take(n);
                let le = (op & 0x10 != 0).then_some(256);
                self.send(&CommandApdu::new(0x80, ins, p1, p2, data, le));
            }
            2 => {
                let index = usize::from(input.byte()) % self.templates.len();
                let (pos, xor) = (usize::from(input.byte()), input.byte());
                let mut c = self
                    .templates
                    .get(index)
                    .map(|(_, c)| c.clone())
                    .expect("in range");
                if let Some(b) = c.data.get_mut(pos) {
                    *b ^= xor;
                }
                self.send(&c);
            }
            3 => {
                let level = input.byte();
                let who = input.byte();
                let sd: &[u8] = match who % 4 {
                    1 => &SSD_AM,
                    2 => &SSD_DM,
                    _ => ISD_AID.as_bytes(),
                };
                if self.select(sd) == 0x9000 {
                    if who & 0x80 != 0 {
                        // Authenticate with the transport keys, then PUT KEY: the issuer key
                        // set, the token key or the receipt key.
                        self.authenticate(level, false);
                        if let Some(put) = self.put_key((who >> 4) & 0x03) {
                            self.send(&put);
                        }
                    } else {
                        self.authenticate(level, who & 0x40 != 0);
                    }
                }
            }
            4 => self.power_cycle(),
            5 => {
                let n = usize::from(input.byte() % 4);
                let torn = input.byte() & 1 != 0;
                self.card().storage_mut().cut_power_after(n, torn);
                if !input.done {
                    self.op(input);
                }
                let lost = self.card().storage().power_lost();
                let card = self.card.take().expect("card present");
                let mut storage = card.into_storage();
                storage.restore_power();
                let card = Card::boot(storage).expect("recovery always finds a valid state");
                self.card = Some(card);
                self.host = Host::None;
                if lost {
                    // The recovered card answers.
                    let sw = self.select(ISD_AID.as_bytes());
                    assert!(
                        sw == 0x9000 || sw == 0x6985,
                        "after recovery SELECT gave {sw:04X}"
                    );
                }
            }
            6 => {
                self.card().reset();
                self.host = Host::None;
            }
            _ => {
                let aid = SELECTABLE[usize::from(input.byte()) % SELECTABLE.len()];
                self.select(aid);
            }
        }
    }

    /// PUT KEY under the open session: `0` the issuer key set replacing the transport set, `1`
    /// the token key (new set 70), `2` the receipt key (new set 71), `3` an application key
    /// (new set 40, the purse's credit key).
    fn put_key(&self, which: u8) -> Option<CommandApdu> {
        match which {
            0 => {
                let data = self.host.put_issuer_keys()?;
                let old = if self.scp02 { 0x20 } else { 0x30 };
                Some(cmd(0xD8, old, 0x81, &data))
            }
            _ => {
                let (kvn, key) = match which {
                    1 => (0x70, TOKEN_KEY),
                    2 => (0x71, RECEIPT_KEY),
                    _ => (0x40, PURSE_KEY),
                };
                let Host::V03 { dek, .. } = &self.host else {
                    return None;
                };
                let dek = AesKey::from_slice(dek).ok()?;
                let key = AesKey::from_slice(&key).ok()?;
                let mut data = vec![kvn];
                data.extend_from_slice(&scp03::put_key_data(&dek, &key).to_bytes().ok()?);
                Some(cmd(0xD8, 0x00, 0x01, &data))
            }
        }
    }
}

/// Run one fuzz input.
pub fn run(data: &[u8]) {
    let mut input = Input {
        bytes: data,
        done: false,
    };
    let setup = input.byte();
    let scp02 = setup & 0x02 != 0;
    let fab = FabSettings {
        scp: if scp02 {
            ScpConfig { scp: 0x02, i: 0x55 }
        } else {
            ScpConfig { scp: 0x03, i: 0x70 }
        },
        kvn: if scp02 { 0x20 } else { 0x30 },
        key: K,
        kdd: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        rng_seed: [0x5A; 16],
    };
    let card = Card::format(RamStorage::new(64 * 1024, 128), &fab).expect("a fab card");
    let mut run = Run {
        card: Some(card),
        host: Host::None,
        scp02,
        templates: templates(),
        trace: std::env::var_os("CARD_FUZZ_TRACE").is_some(),
    };
    run.authenticate(setup >> 2, false);
    let mut ops = 0;
    while !input.done && ops < MAX_OPS {
        run.op(&mut input);
        ops += 1;
    }
    run.power_cycle();
}

/// Operation 2 for the template `name`, unchanged.
fn template(name: &str) -> [u8; 4] {
    let index = templates()
        .iter()
        .position(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no template {name}"));
    [2, index as u8, 0xFF, 0x00]
}

fn walk(names: &[&str]) -> Vec<u8> {
    names.iter().flat_map(|n| template(n)).collect()
}

/// Hand-written inputs that walk the main paths (the fuzzer's seed corpus, replayed in CI).
pub fn seeds() -> Vec<Vec<u8>> {
    let issuer_path = [
        "load",
        "block-0",
        "block-1",
        "block-2",
        "install-selectable",
        "status-apps",
        "status-files",
        "status-modules",
        "status-isd",
        "data-keys",
        "data-card",
        "data-capabilities",
        "data-applications",
        "data-cplc",
        "lock-applet",
        "unlock-applet",
        "delete-applet",
        "delete-package",
        "combined-first",
        "block-0",
        "block-1",
        "block-2",
        "combined-final",
        "delete-package-related",
        "install-ssd-am",
        "install-purse",
        "perso-purse",
        "store-purse",
        "extradite-purse",
        "registry-update",
        "store-iin-cin",
        "delete-key-3",
        "card-initialized",
        "card-secured",
        "lock-ssd-am-tree",
        "card-lock",
        "status-apps",
    ];
    let mut out = Vec::new();
    // SCP03 level 33 and SCP02 level 13: the issuer's path.
    let mut s = vec![5 << 2];
    s.extend(walk(&issuer_path));
    out.push(s);
    let mut s = vec![0x02 | (4 << 2)];
    s.extend(walk(&issuer_path));
    out.push(s);
    // Delegated management: the issuer's token and receipt keys, an SSD with Delegated
    // Management, then its tokened load, install and delete with receipts.
    let mut s = vec![5 << 2];
    s.extend([3, 5, 0x80 | 0x10, 3, 5, 0x80 | 0x20, 3, 5, 0x00]);
    s.extend(walk(&["install-ssd-dm", "install-ssd-am"]));
    s.extend([3, 5, 2]); // select SSD_DM, transport keys, level 33
    s.extend(walk(&[
        "dm-load",
        "block-0",
        "block-1",
        "block-2",
        "dm-install",
        "status-apps",
        "dm-delete",
    ]));
    s.extend([3, 5, 1]); // SSD_AM: authorized management
    s.extend(walk(&[
        "load",
        "block-0",
        "block-1",
        "block-2",
        "install-selectable",
        "delete-package-related",
    ]));
    s.extend([3, 5, 0]);
    s.extend(walk(&["data-counter", "delete-token-key"]));
    out.push(s);
    // Keys replaced, then a session with the issuer keys; power cuts in the middle.
    let mut s = vec![5 << 2, 3, 5, 0x80, 3, 5, 0x40];
    s.extend(template("load"));
    s.extend([5, 1, 0]);
    s.extend(template("block-0"));
    s.extend([4, 3, 2, 0x40]);
    s.extend(walk(&["load", "block-0", "block-1", "block-2"]));
    s.extend([5, 2, 1]);
    s.extend(template("install-selectable"));
    s.extend([4]);
    out.push(s);
    // Raw bytes and GP commands with odd lengths.
    out.push(vec![
        0, 0, 0, 4, 0x80, 0xCA, 0x00, 0x66, 0, 7, 0x00, 0xA4, 0x04, 0x00, 0x02, 0xA0, 0x00, 1,
        0xE6, 0x0E, 0x01, 3, 1, 2, 3, 0x11, 0xF2, 0x40, 0x00, 2, 0x4F, 0x00, 6, 7, 0, 7, 1, 0, 5,
        0x00, 0x70, 0x00, 0x00, 0x01,
    ]);
    out
}
