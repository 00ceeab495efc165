//! Host side for the card's tests: a terminal that opens SCP03 sessions with gp-core's host
//! session and software keys, and builds GP commands by hand (independently of the card code).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use card_firmware::aid::ISD_AID;
use card_firmware::keys::ScpConfig;
use card_firmware::state::FabSettings;
use card_firmware::storage::RamStorage;
use card_firmware::Card;
use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::keys::AesKey;
use gp_core::scp03;

pub const K: [u8; 16] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,
];
pub const NEW_ENC: [u8; 16] = [0x11; 16];
pub const NEW_MAC: [u8; 16] = [0x22; 16];
pub const NEW_DEK: [u8; 16] = [0x33; 16];
pub const KDD: [u8; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
pub const PACKAGE: [u8; 5] = [0xD0, 0xD1, 0xD2, 0xD3, 0xD4];
pub const APPLET: [u8; 8] = [0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0x01, 0x01, 0x01];

pub fn fab() -> FabSettings {
    FabSettings {
        scp: ScpConfig { scp: 0x03, i: 0x70 },
        kvn: 0x30,
        key: K,
        kdd: KDD,
        rng_seed: [0x5A; 16],
    }
}

pub fn new_card() -> Card<RamStorage> {
    Card::format(RamStorage::new(64 * 1024, 128), &fab()).unwrap()
}

/// Static keys of one key set, as the host knows them.
#[derive(Clone, Copy)]
pub struct StaticKeys {
    pub kvn: u8,
    pub enc: [u8; 16],
    pub mac: [u8; 16],
    pub dek: [u8; 16],
}

pub const TRANSPORT: StaticKeys = StaticKeys {
    kvn: 0x30,
    enc: K,
    mac: K,
    dek: K,
};
pub const ISSUER: StaticKeys = StaticKeys {
    kvn: 0x01,
    enc: NEW_ENC,
    mac: NEW_MAC,
    dek: NEW_DEK,
};

pub fn sw(resp: &[u8]) -> u16 {
    let n = resp.len();
    u16::from_be_bytes([resp[n - 2], resp[n - 1]])
}

/// A terminal talking to a card, with an optional secure channel.
pub struct Terminal {
    pub session: Option<scp03::Session>,
    pub host_challenge: [u8; 8],
}

impl Terminal {
    pub fn new() -> Self {
        Terminal {
            session: None,
            host_challenge: [0xA5, 1, 2, 3, 4, 5, 6, 7],
        }
    }

    pub fn select_isd(&mut self, card: &mut Card<RamStorage>) -> Vec<u8> {
        self.session = None;
        let mut apdu = vec![0x00, 0xA4, 0x04, 0x00, 0x08];
        apdu.extend_from_slice(ISD_AID.as_bytes());
        apdu.push(0x00);
        card.process(&apdu)
    }

    pub fn select(&mut self, card: &mut Card<RamStorage>, aid: &[u8]) -> Vec<u8> {
        self.session = None;
        let mut apdu = vec![0x00, 0xA4, 0x04, 0x00, aid.len() as u8];
        apdu.extend_from_slice(aid);
        apdu.push(0x00);
        card.process(&apdu)
    }

    /// INITIALIZE UPDATE + EXTERNAL AUTHENTICATE; returns the EXTERNAL AUTHENTICATE status.
    pub fn authenticate(
        &mut self,
        card: &mut Card<RamStorage>,
        keys: StaticKeys,
        level: u8,
    ) -> u16 {
        self.session = None;
        let mut iu = vec![0x80, 0x50, keys.kvn, 0x00, 0x08];
        iu.extend_from_slice(&self.host_challenge);
        iu.push(0x00);
        let resp = card.process(&iu);
        if sw(&resp) != 0x9000 {
            return sw(&resp);
        }
        let iur = scp03::InitializeUpdateResponse::parse(&resp[..resp.len() - 2]).unwrap();
        assert_eq!(iur.kdd, KDD);
        assert_eq!(iur.kvn, keys.kvn);
        let mut enc = AesKey::from_slice(&keys.enc).unwrap();
        let mut mac = AesKey::from_slice(&keys.mac).unwrap();
        let sk = scp03::derive_session_keys(
            &mut enc,
            &mut mac,
            16,
            &self.host_challenge,
            &iur.card_challenge,
        )
        .unwrap();
        assert_eq!(
            scp03::card_cryptogram(&sk, &self.host_challenge, &iur.card_challenge),
            iur.card_cryptogram,
            "card cryptogram"
        );
        let hc = scp03::host_cryptogram(&sk, &self.host_challenge, &iur.card_challenge);
        let mut session = scp03::Session::host(sk, scp03::SecurityLevel::parse(level).unwrap());
        let ea = session.external_authenticate(&hc);
        let resp = card.process(&ea.to_bytes());
        if sw(&resp) == 0x9000 {
            self.session = Some(session);
        }
        sw(&resp)
    }

    /// Send a plain command through the secure channel (if any); returns the unwrapped response.
    pub fn send(&mut self, card: &mut Card<RamStorage>, cmd: CommandApdu) -> ResponseApdu {
        match &mut self.session {
            Some(session) => {
                let wrapped = session.wrap(&cmd).unwrap();
                let raw = card.process(&wrapped.to_bytes());
                let resp = ResponseApdu::parse(&raw).unwrap();
                if resp.sw == 0x9000 || resp.sw == 0x6310 {
                    session.unwrap_response(&resp).unwrap()
                } else {
                    resp
                }
            }
            None => ResponseApdu::parse(&card.process(&cmd.to_bytes())).unwrap(),
        }
    }

    /// The wire bytes of `cmd` wrapped by the current session (advances the session).
    pub fn wrap(&mut self, cmd: &CommandApdu) -> Vec<u8> {
        match &mut self.session {
            Some(s) => s.wrap(cmd).unwrap().to_bytes(),
            None => cmd.to_bytes(),
        }
    }
}

pub fn cmd(cla: u8, ins: u8, p1: u8, p2: u8, data: &[u8]) -> CommandApdu {
    CommandApdu::new(cla, ins, p1, p2, data.to_vec(), Some(256))
}

fn kcv_aes(key: &[u8; 16]) -> [u8; 3] {
    gp_core::kcv::kcv_aes(&AesKey::from_slice(key).unwrap())
}

/// PUT KEY data for one key: new KVN ‖ key field (`88` AES or `80` 3DES) encrypted under the
/// AES `dek` (SCP03), with its KCV.
pub fn put_one_key_data(kvn: u8, key_type: u8, key: &[u8; 16], dek: &[u8; 16]) -> Vec<u8> {
    let dek = AesKey::from_slice(dek).unwrap();
    let enc = scp03::encrypt_key_data(&dek, key);
    let mut data = vec![kvn, key_type];
    if key_type == 0x88 {
        data.extend_from_slice(&[0x11, 0x10]);
    } else {
        data.push(0x10);
    }
    data.extend_from_slice(&enc);
    data.push(0x03);
    if key_type == 0x88 {
        data.extend_from_slice(&kcv_aes(key));
    } else {
        data.extend_from_slice(&gp_core::kcv::kcv_des3(
            &gp_core::keys::Des3Key::from_slice(key).unwrap(),
        ));
    }
    data
}

/// PUT KEY data: new KVN ‖ three AES key fields encrypted under `dek`.
pub fn put_key_data(new: StaticKeys, dek: &[u8; 16]) -> Vec<u8> {
    let dek = AesKey::from_slice(dek).unwrap();
    let mut data = vec![new.kvn];
    for key in [new.enc, new.mac, new.dek] {
        let enc = scp03::encrypt_key_data(&dek, &key);
        data.extend_from_slice(&[0x88, 0x11, 0x10]);
        data.extend_from_slice(&enc);
        data.push(0x03);
        data.extend_from_slice(&kcv_aes(&key));
    }
    data
}

pub fn expected_put_key_response(new: StaticKeys) -> Vec<u8> {
    let mut r = vec![new.kvn];
    for k in [new.enc, new.mac, new.dek] {
        r.extend_from_slice(&kcv_aes(&k));
    }
    r
}

/// The synthetic package the tests load.
pub fn lfdb() -> Vec<u8> {
    card_firmware::cap::synthetic_lfdb(&PACKAGE, [1, 0], &[&APPLET])
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

pub fn install_for_load_data(package: &[u8], hash: &[u8]) -> Vec<u8> {
    let mut d = vec![package.len() as u8];
    d.extend_from_slice(package);
    d.push(8);
    d.extend_from_slice(ISD_AID.as_bytes());
    d.push(hash.len() as u8);
    d.extend_from_slice(hash);
    d.extend_from_slice(&[0x00, 0x00]);
    d
}

/// Load file (C4 LFDB) split into LOAD commands of `block` bytes.
pub fn load_commands(lfdb: &[u8], block: usize) -> Vec<CommandApdu> {
    let mut file = vec![0xC4];
    if lfdb.len() < 0x80 {
        file.push(lfdb.len() as u8);
    } else if lfdb.len() < 0x100 {
        file.extend_from_slice(&[0x81, lfdb.len() as u8]);
    } else {
        file.extend_from_slice(&[0x82, (lfdb.len() >> 8) as u8, lfdb.len() as u8]);
    }
    file.extend_from_slice(lfdb);
    let chunks: Vec<&[u8]> = file.chunks(block).collect();
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| cmd(0x80, 0xE8, if i + 1 == n { 0x80 } else { 0x00 }, i as u8, c))
        .collect()
}

pub fn install_and_make_selectable_data(package: &[u8], module: &[u8], app: &[u8]) -> Vec<u8> {
    let mut d = vec![package.len() as u8];
    d.extend_from_slice(package);
    d.push(module.len() as u8);
    d.extend_from_slice(module);
    d.push(app.len() as u8);
    d.extend_from_slice(app);
    d.extend_from_slice(&[0x01, 0x00]); // privileges
    d.extend_from_slice(&[0x02, 0xC9, 0x00]); // install parameters
    d.push(0x00); // token
    d
}

/// Personalise: transport keys → issuer keys (KVN 01), OP_READY → INITIALIZED → SECURED.
pub fn personalise(card: &mut Card<RamStorage>, t: &mut Terminal) {
    assert_eq!(sw(&t.select_isd(card)), 0x9000);
    assert_eq!(t.authenticate(card, TRANSPORT, 0x33), 0x9000);
    let r = t.send(card, cmd(0x80, 0xD8, 0x30, 0x81, &put_key_data(ISSUER, &K)));
    assert_eq!(r.sw, 0x9000);
    assert_eq!(r.data, expected_put_key_response(ISSUER));
    assert_eq!(t.send(card, cmd(0x80, 0xF0, 0x80, 0x07, &[])).sw, 0x9000);
    assert_eq!(t.send(card, cmd(0x80, 0xF0, 0x80, 0x0F, &[])).sw, 0x9000);
}

/// INSTALL [for load] of the synthetic package (with the hash of `lfdb`) over an open session,
/// which must succeed.
pub fn install_for_load(card: &mut Card<RamStorage>, t: &mut Terminal, lfdb: &[u8]) {
    let r = t.send(
        card,
        cmd(
            0x80,
            0xE6,
            0x02,
            0x00,
            &install_for_load_data(&PACKAGE, &sha256(lfdb)),
        ),
    );
    assert_eq!(r.sw, 0x9000);
}

/// INSTALL [for load] and every LOAD block (`block` bytes each) of the synthetic package over an
/// open session, all of which must succeed.
pub fn load(card: &mut Card<RamStorage>, t: &mut Terminal, block: usize) {
    let lfdb = lfdb();
    install_for_load(card, t, &lfdb);
    for c in load_commands(&lfdb, block) {
        assert_eq!(t.send(card, c).sw, 0x9000);
    }
}

/// Load and install the synthetic package over an open session.
pub fn load_and_install(card: &mut Card<RamStorage>, t: &mut Terminal) {
    load(card, t, 16);
    let r = t.send(
        card,
        cmd(
            0x80,
            0xE6,
            0x0C,
            0x00,
            &install_and_make_selectable_data(&PACKAGE, &APPLET, &APPLET),
        ),
    );
    assert_eq!(r.sw, 0x9000);
}

// ---- Security domains and delegated management -------------------------------------------------

pub const SD_PACKAGE: [u8; 7] = [0xA0, 0, 0, 0x01, 0x51, 0x53, 0x50];
pub const SD_MODULE: [u8; 8] = [0xA0, 0, 0, 0x01, 0x51, 0x53, 0x50, 0x41];
/// A supplementary security domain the tests create.
pub const SSD: [u8; 10] = [0xA0, 0, 0, 0x01, 0x51, 0x53, 0x50, 0x41, 0x00, 0x01];
/// The issuer's token key (ISD KVN 70) and receipt key (ISD KVN 71), AES-128.
pub const TOKEN_KEY: [u8; 16] = [0x70; 16];
pub const RECEIPT_KEY: [u8; 16] = [0x71; 16];

pub fn lv(out: &mut Vec<u8>, v: &[u8]) {
    out.push(v.len() as u8);
    out.extend_from_slice(v);
}

/// INSTALL [for install] data up to (not including) the token length field.
pub fn install_body(elf: &[u8], module: &[u8], app: &[u8], privileges: &[u8]) -> Vec<u8> {
    let mut d = Vec::new();
    lv(&mut d, elf);
    lv(&mut d, module);
    lv(&mut d, app);
    lv(&mut d, privileges);
    d.extend_from_slice(&[0x02, 0xC9, 0x00]);
    d
}

/// INSTALL [for load] data up to (not including) the token length field.
pub fn load_body(package: &[u8], sd: &[u8], hash: &[u8]) -> Vec<u8> {
    let mut d = Vec::new();
    lv(&mut d, package);
    lv(&mut d, sd);
    lv(&mut d, hash);
    d.push(0x00);
    d
}

/// INSTALL [for install and make selectable] of an SSD with `privileges`.
pub fn install_ssd(
    card: &mut Card<RamStorage>,
    t: &mut Terminal,
    aid: &[u8],
    privileges: [u8; 3],
) -> u16 {
    let mut d = install_body(&SD_PACKAGE, &SD_MODULE, aid, &privileges);
    d.push(0x00);
    t.send(card, cmd(0x80, 0xE6, 0x0C, 0x00, &d)).sw
}

/// The AES token (CMAC under [`TOKEN_KEY`]) over `P1 P2 len body` (GP C.4).
pub fn aes_token(p1: u8, p2: u8, body: &[u8]) -> Vec<u8> {
    let mut input = vec![p1, p2, body.len() as u8];
    input.extend_from_slice(body);
    gp_core::dap::dap_aes(&AesKey::from_slice(&TOKEN_KEY).unwrap(), &input).to_vec()
}

/// `body ‖ len ‖ token`.
pub fn with_token(body: &[u8], token: &[u8]) -> Vec<u8> {
    let mut d = body.to_vec();
    lv(&mut d, token);
    d
}

/// Put the token and receipt keys into the ISD (issuer session open on `t`).
pub fn put_dm_keys(card: &mut Card<RamStorage>, t: &mut Terminal, token: bool, receipt: bool) {
    if token {
        let d = put_one_key_data(0x70, 0x88, &TOKEN_KEY, &NEW_DEK);
        assert_eq!(t.send(card, cmd(0x80, 0xD8, 0x00, 0x01, &d)).sw, 0x9000);
    }
    if receipt {
        let d = put_one_key_data(0x71, 0x88, &RECEIPT_KEY, &NEW_DEK);
        assert_eq!(t.send(card, cmd(0x80, 0xD8, 0x00, 0x01, &d)).sw, 0x9000);
    }
}

/// A secured card with an SSD of `privileges` and the DM keys; returns the card with a session
/// open on the SSD (transport keys, level 33).
pub fn card_with_ssd(privileges: [u8; 3]) -> (Card<RamStorage>, Terminal) {
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    put_dm_keys(&mut card, &mut t, true, true);
    assert_eq!(install_ssd(&mut card, &mut t, &SSD, privileges), 0x9000);
    let mut v = Terminal::new();
    assert_eq!(sw(&v.select(&mut card, &SSD)), 0x9000);
    assert_eq!(v.authenticate(&mut card, TRANSPORT, 0x33), 0x9000);
    (card, v)
}

/// Check a confirmation `L ‖ Lr ‖ receipt ‖ 02 counter Lu unique [Lt token-id]` (GP Table 11-13)
/// against the receipt key: AES-CMAC over the confirmation data followed by `fields`.
pub fn check_receipt(resp: &[u8], counter: u16, unique: &[u8], fields: &[u8]) {
    let (l, rest) = resp.split_first().unwrap();
    assert_eq!(*l as usize, rest.len(), "confirmation length");
    let (lr, rest) = rest.split_first().unwrap();
    assert_eq!(*lr, 16, "AES receipt");
    let (receipt, data) = rest.split_at(16);
    let mut expected_data = vec![0x02];
    expected_data.extend_from_slice(&counter.to_be_bytes());
    lv(&mut expected_data, unique);
    assert_eq!(data, expected_data, "confirmation data");
    let mut signed = data.to_vec();
    signed.extend_from_slice(fields);
    let mac = gp_core::dap::dap_aes(&AesKey::from_slice(&RECEIPT_KEY).unwrap(), &signed);
    assert_eq!(receipt, mac, "receipt");
}
