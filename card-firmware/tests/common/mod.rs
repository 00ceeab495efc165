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

/// Load and install the synthetic package over an open session.
pub fn load_and_install(card: &mut Card<RamStorage>, t: &mut Terminal) {
    let lfdb = lfdb();
    let r = t.send(
        card,
        cmd(
            0x80,
            0xE6,
            0x02,
            0x00,
            &install_for_load_data(&PACKAGE, &sha256(&lfdb)),
        ),
    );
    assert_eq!(r.sw, 0x9000);
    for c in load_commands(&lfdb, 16) {
        assert_eq!(t.send(card, c).sw, 0x9000);
    }
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
