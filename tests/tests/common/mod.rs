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
        for (script, ledger) in [
            ("issuer-master.ron", "issuer.jsonl"),
            ("vendor-keys.ron", "vendor.jsonl"),
        ] {
            ok(hsm
                .tool("keyman")
                .args(["ceremony", "run"])
                .arg(root().join("ceremonies").join(script))
                .arg("--ledger")
                .arg(hsm.path(ledger))
                .args(["--pin-source", &pin_source()]));
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

    /// `signer package hello.cap --out NAME` with more arguments.
    pub fn package(&self, name: &str, args: &[&str]) -> Command {
        let mut c = self.hsm.tool("signer");
        c.arg("package")
            .arg(self.hsm.path("hello.cap"))
            .args(["--out", &self.p(name), "--pin-source", &pin_source()])
            .args(args);
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
