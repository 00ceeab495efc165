//! Shared setup of the signer end-to-end tests: an issuer token and a vendor token made by the project's
//! ceremonies, vendor signing key pairs, a demo CAP and a card list.

#![allow(dead_code)]

use postissue_tests::{ok, root, SoftHsm, PIN_VAR};
use std::process::Command;

/// The issuer's master, as the ceremony names it.
pub const ISSUER_MASTER: &str = "pkcs11:token=issuer;object=isd-kmc";
/// The vendor's token.
pub const VENDOR: &str = "pkcs11:token=vendor";
/// The demo applet and its load file.
pub const APPLET: &str = "A00000064750490101";
/// KDDs of the three cards the tests use; the first two are in the card list.
pub const KDD_A: &str = "00010203040506070809";
/// Card B.
pub const KDD_B: &str = "0102030405060708090A";
/// Card C: not in the card list.
pub const KDD_C: &str = "0A0B0C0D0E0F10111213";

/// `env:POSTISSUE_TEST_PIN`.
pub fn pin_source() -> String {
    format!("env:{PIN_VAR}")
}

/// A vendor key URI.
pub fn vendor_key(label: &str) -> String {
    format!("{VENDOR};object={label}")
}

/// Both tokens with their keys, a CAP and a card list.
pub struct World {
    /// The token store and tools.
    pub hsm: SoftHsm,
}

impl World {
    /// Runs both ceremonies and makes the vendor's key pairs (RSA 1024 and 2048, EC P-256).
    pub fn new() -> World {
        let hsm = SoftHsm::new();
        hsm.init_token("issuer");
        hsm.init_token("vendor");
        for (script, ledger, token) in [
            ("issuer-master.ron", "issuer.jsonl", "issuer"),
            ("vendor-keys.ron", "vendor.jsonl", "vendor"),
        ] {
            ok(hsm
                .tool("keyman")
                .args(["ceremony", "run"])
                .arg(root().join("ceremonies").join(script))
                .arg("--ledger")
                .arg(hsm.path(ledger))
                .args(["--pin-source", &pin_source()])
                // The ceremony starts the ledger and anchors its head in the token.
                .args(["--anchor-token", token]));
        }
        hsm.keypair("vendor", "dap-rsa1024", "0301", "rsa:1024");
        hsm.keypair("vendor", "dap-rsa", "0302", "rsa:2048");
        hsm.keypair("vendor", "dap-ec", "0303", "EC:prime256v1");
        ok(hsm.tool("demo-cap").arg(hsm.path("hello.cap")));
        std::fs::write(
            hsm.path("cards.csv"),
            format!("identity,kdd\ncard-a,{KDD_A}\ncard-b,{KDD_B}\n"),
        )
        .unwrap();
        World { hsm }
    }

    /// A path in the world's directory, as a string.
    pub fn p(&self, name: &str) -> String {
        self.hsm.path(name).display().to_string()
    }

    /// `keyman ledger init NAME --token TOKEN`: a new, empty ledger anchored in `token`; returns its path.
    pub fn new_ledger(&self, name: &str, token: &str) -> String {
        let path = self.p(name);
        ok(self.hsm.tool("keyman").args([
            "ledger",
            "init",
            &path,
            "--token",
            token,
            "--pin-source",
            &pin_source(),
        ]));
        path
    }

    /// `keyman ledger verify PATH --token TOKEN`.
    pub fn verify_ledger(&self, path: &str, token: &str) -> Command {
        let mut c = self.hsm.tool("keyman");
        c.args([
            "ledger",
            "verify",
            path,
            "--token",
            token,
            "--pin-source",
            &pin_source(),
        ]);
        c
    }

    /// `signer package hello.cap --out NAME` with more arguments.
    pub fn package(&self, name: &str, args: &[&str]) -> Command {
        let mut c = self.hsm.tool("signer");
        c.arg("package")
            .arg(self.hsm.path("hello.cap"))
            .args(["--out", &self.p(name), "--pin-source", &pin_source()])
            .args(args);
        c
    }

    /// [`World::package`] with a per-card AES DAP (the vendor's `dap-master`, every card of `cards.csv`,
    /// diversified with scheme aes) before `args`.
    pub fn package_per_card(&self, name: &str, args: &[&str]) -> Command {
        let mut c = self.package(
            name,
            &[
                "--dap",
                "aes",
                "--dap-key",
                &vendor_key("dap-master"),
                "--cards",
                &self.p("cards.csv"),
                "--diversify",
                "aes",
            ],
        );
        c.args(args);
        c
    }

    /// A personalised card with this KDD (image NAME.img).
    pub fn card(&self, name: &str, kdd: &str) -> String {
        let image = self.p(&format!("{name}.img"));
        ok(self
            .hsm
            .tool("card-sim")
            .args(["new", "--image", &image, "--kdd", kdd]));
        ok(self.hsm.tool("signer").args([
            "personalise",
            "--card",
            &format!("sim:{image}"),
            "--master",
            ISSUER_MASTER,
            "--pin-source",
            &pin_source(),
        ]));
        image
    }

    /// The card's registry, one line per entry.
    pub fn registry(&self, image: &str) -> String {
        ok(self.hsm.tool("signer").args([
            "card",
            "list",
            "--card",
            &format!("sim:{image}"),
            "--master",
            ISSUER_MASTER,
            "--pin-source",
            &pin_source(),
        ]))
    }

    /// `signer deploy PKG --card sim:IMAGE` with more arguments.
    pub fn deploy(&self, pkg: &str, image: &str, args: &[&str]) -> Command {
        let mut c = self.hsm.tool("signer");
        c.args([
            "deploy",
            pkg,
            "--card",
            &format!("sim:{image}"),
            "--master",
            ISSUER_MASTER,
            "--pin-source",
            &pin_source(),
        ])
        .args(args);
        c
    }
}

/// Replaces the first occurrence of `field`'s string value in a package file with `f(old)`.
pub fn edit_field(path: &str, field: &str, f: impl Fn(&str) -> String, out: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let key = format!("\"{field}\": \"");
    let start = text
        .find(&key)
        .unwrap_or_else(|| panic!("{field} in {text}"))
        + key.len();
    let end = start + text[start..].find('"').unwrap();
    let new = format!("{}{}{}", &text[..start], f(&text[start..end]), &text[end..]);
    std::fs::write(out, new).unwrap();
}

/// Flips the last hex digit of a value.
pub fn flip_last(v: &str) -> String {
    let mut s = v.to_string();
    let last = s.pop().unwrap();
    s.push(if last == '0' { '1' } else { '0' });
    s
}

/// The bytes of a hex string.
pub fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// Points this process at the store's SoftHSM2 configuration and PIN (`SOFTHSM2_CONF`, [`PIN_VAR`]) and
/// loads the PKCS#11 module: once per process, so one test function per file uses it.
pub fn load_module(hsm: &SoftHsm) -> keyman::hsm::Hsm {
    std::env::set_var("SOFTHSM2_CONF", hsm.conf());
    std::env::set_var(PIN_VAR, &hsm.pin);
    keyman::hsm::Hsm::load(None).unwrap()
}

/// A session on the token `uri` (`pkcs11:token=…` or a bare label), logged in with the PIN in [`PIN_VAR`].
pub fn open_token<'h>(hsm: &'h keyman::hsm::Hsm, uri: &str) -> keyman::hsm::TokenSession<'h> {
    hsm.open(
        &keyman::hsm::TokenUri::parse(uri).unwrap(),
        &keyman::pin::PinSource::Env(PIN_VAR.into()),
    )
    .unwrap()
}

/// An AES-128 secret key to generate in a token.
pub fn aes_spec(
    label: &str,
    id: u8,
    usages: Vec<keyman::hsm::Usage>,
    extractable: bool,
) -> keyman::hsm::SecretKeySpec {
    keyman::hsm::SecretKeySpec {
        label: label.into(),
        id: vec![id],
        key_type: keyman::hsm::SecretKeyType::Aes128,
        usages,
        extractable,
    }
}

/// Selects `aid` and opens its SCP03 channel (C-MAC and C-DEC) with the card's default transport keys
/// (KVN 0), imported into `token` as session keys; runs `f` with the channel, the INITIALIZE UPDATE
/// response and the transport static keys.
pub fn with_transport_channel<R>(
    t: &mut dyn signer::transport::Transport,
    token: &keyman::hsm::TokenSession<'_>,
    aid: &[u8],
    f: impl FnOnce(
        &mut signer::channel::SecureChannel<'_>,
        &gp_core::scp03::InitializeUpdateResponse,
        signer::channel::StaticKeys,
    ) -> R,
) -> R {
    use keyman::hsm::{SecretKeyType, Usage};
    use signer::channel::{self, SecureChannel, StaticKeys};
    let k = secrecy::SecretSlice::from(signer::gp::DEFAULT_TRANSPORT_KEY.to_vec());
    let enc = token
        .import_session_key(&k, SecretKeyType::Aes128, &[Usage::Sign])
        .unwrap();
    let mac = token
        .import_session_key(&k, SecretKeyType::Aes128, &[Usage::Sign])
        .unwrap();
    let dek = token
        .import_session_key(&k, SecretKeyType::Aes128, &[Usage::Wrap])
        .unwrap();
    let keys = StaticKeys {
        enc: enc.handle(),
        mac: mac.handle(),
        dek: dek.handle(),
    };
    channel::select(t, aid).unwrap();
    let (hc, iu) = channel::initialize_update(t, token, 0).unwrap();
    let mut ch = SecureChannel::authenticate(
        t,
        token,
        keys,
        hc,
        &iu,
        gp_core::scp03::SecurityLevel::C_MAC_C_DEC,
    )
    .unwrap();
    f(&mut ch, &iu, keys)
}

/// The vendor opens the security domain `ssd` (just created by the issuer) with its default transport
/// keys and replaces them with the card's own SSD keys, derived in its token from `ssd-kmc` (scheme
/// aes), as key set 01.
pub fn replace_ssd_transport_keys(
    t: &mut dyn signer::transport::Transport,
    vendor: &keyman::hsm::TokenSession<'_>,
    ssd: &[u8],
) {
    with_transport_channel(t, vendor, ssd, |ch, iu, current| {
        let ssd_master = vendor.find_secret_key("ssd-kmc").unwrap();
        let new = signer::diversify::derive_card_keys(
            vendor,
            ssd_master,
            gp_core::diversify::Scheme::Aes,
            &iu.kdd,
            keyman::hsm::SecretKeyType::Aes128,
            signer::diversify::Purpose::PutKey,
        )
        .unwrap();
        signer::gp::put_key_set(ch, vendor, &current, &new, (iu.kvn, 0x01), false).unwrap();
    });
}

/// INSTALL [for install and make selectable] of `app` from `load_file`/`module` with `privileges` and
/// install parameters `C9 00`.
pub fn install(
    load_file: &str,
    module: &str,
    app: &str,
    privileges: &[u8],
) -> gp_core::commands::InstallForInstall {
    gp_core::commands::InstallForInstall {
        load_file_aid: h(load_file),
        module_aid: h(module),
        application_aid: h(app),
        privileges: privileges.to_vec(),
        install_parameters: vec![0xC9, 0x00],
        token: Vec::new(),
        make_selectable: true,
    }
}

/// The card's built-in security-domain load file and module, from which SSDs are installed.
pub const SD_PACKAGE: &str = "A0000001515350";
/// The security-domain module inside [`SD_PACKAGE`].
pub const SD_MODULE: &str = "A000000151535041";
/// Privileges of a Delegated Management SSD: Security Domain + Delegated Management.
pub const DM_PRIVILEGES: [u8; 3] = [0xA0, 0x00, 0x00];

/// The issuer creates the SSD `ssd` with `privileges`; the vendor replaces its transport keys with the
/// card's own SSD keys derived from `ssd-kmc` (scheme aes) as key set 01.
pub fn create_ssd_with_keys(
    image: &str,
    issuer: &keyman::hsm::TokenSession<'_>,
    vendor: &keyman::hsm::TokenSession<'_>,
    ssd: &str,
    privileges: [u8; 3],
) {
    let master = issuer.find_secret_key("isd-kmc").unwrap();
    let mut t = signer::transport::SimTransport::open(std::path::Path::new(image)).unwrap();
    {
        let (mut ch, _) = signer::gp::open_issuer_channel(
            &mut t,
            issuer,
            master,
            gp_core::diversify::Scheme::Emv,
        )
        .unwrap();
        let install = install(SD_PACKAGE, SD_MODULE, ssd, &privileges);
        ch.send_ok(&install.to_apdu().unwrap(), "INSTALL SSD")
            .unwrap();
    }
    replace_ssd_transport_keys(&mut t, vendor, &h(ssd));
}

/// Delegated-management secret keys: the issuer's receipt master `receipt-master` in token `issuer` and
/// the vendor's SSD master `ssd-kmc` in token `vendor` (the token signing key pair `dm-token` is made
/// with `SoftHsm::keypair` before the module is loaded).
pub fn make_dm_keys(
    issuer: &keyman::hsm::TokenSession<'_>,
    vendor: &keyman::hsm::TokenSession<'_>,
) {
    use keyman::hsm::Usage;
    issuer
        .generate_secret(&aes_spec(
            "receipt-master",
            0x71,
            vec![Usage::Derive],
            false,
        ))
        .unwrap();
    vendor
        .generate_secret(&aes_spec("ssd-kmc", 0x51, vec![Usage::Derive], false))
        .unwrap();
}
