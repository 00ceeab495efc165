//! The paper form for the room: what will happen, in order, with boxes to tick, blanks for every KCV the
//! tool will show, and signature lines.
//!
//! Why paper: the ledger proves what the tool did, the form proves what the people saw. Custodians write
//! each KCV as it is shown and compare it with their own forms; at the end, the ledger fingerprint read
//! aloud goes on the form, binding the two together.

use super::{form_method, Ceremony, PinPolicy, Step};
use std::fmt::Write;

const LINE: &str = "____________________";

/// The checklist for a ceremony script; `script_name` and `script_sha256` identify the exact script.
pub fn paper_form(c: &Ceremony, script_name: &str, script_sha256: &str) -> String {
    let mut f = String::new();
    let rule = "=".repeat(78);
    let _ = writeln!(f, "{rule}");
    let _ = writeln!(f, "KEY CEREMONY: {}", c.name);
    let _ = writeln!(f, "{rule}");
    let _ = writeln!(f, "Purpose:  {}", c.purpose);
    let _ = writeln!(f, "Script:   {script_name}");
    let _ = writeln!(f, "SHA-256:  {script_sha256}");
    let _ = writeln!(f, "Date: {LINE}   Place: {LINE}   Start time: __________");
    let _ = writeln!(f);
    let _ = writeln!(f, "TOKENS");
    for t in &c.tokens {
        let _ = writeln!(f, "  [ ] {} = {}   serial: {LINE}", t.name, t.uri);
        if let PinPolicy::Quorum {
            threshold,
            officers,
        } = &t.pin
        {
            let _ = writeln!(
                f,
                "      PIN opened by {threshold} of: {} (tick who entered a share)",
                officers
                    .iter()
                    .map(|o| format!("[ ] {o}"))
                    .collect::<Vec<_>>()
                    .join("  ")
            );
        }
    }
    let _ = writeln!(f);
    let _ = writeln!(f, "PARTICIPANTS (name in capitals, signature on arrival)");
    for r in &c.roles {
        let _ = writeln!(
            f,
            "  {:<10} {:<20} name: {LINE}  signature: {LINE}",
            r.kind.name(),
            r.name
        );
    }
    let _ = writeln!(f);
    let _ = writeln!(f, "BEFORE THE FIRST STEP");
    let _ = writeln!(
        f,
        "  [ ] the script's SHA-256 above matches the file on the ceremony machine"
    );
    let _ = writeln!(
        f,
        "  [ ] `keyman ceremony run --dry-run` read aloud; every participant agrees"
    );
    let _ = writeln!(
        f,
        "  [ ] tokens present, no one else in the room, phones out"
    );
    for (n, step) in c.steps.iter().enumerate() {
        let token = c.token_of(step).map_or("?", |t| t.name.as_str());
        let _ = writeln!(f);
        let _ = writeln!(f, "STEP {}: {}", n + 1, step.kind());
        let _ = writeln!(f, "  {}", step.describe(token));
        match step {
            Step::GenerateSecretKey {
                key_type, label, ..
            } => {
                let _ = writeln!(
                    f,
                    "  KCV of '{label}' shown ({}): ________",
                    form_method(*key_type)
                );
            }
            Step::GenerateKeyPair { label, .. } => {
                let _ = writeln!(
                    f,
                    "  public key SHA-256 of '{label}' (first 16 hex digits): ________________"
                );
            }
            Step::FormKey {
                label,
                key_type,
                components,
                ..
            } => {
                for (i, comp) in components.iter().enumerate() {
                    let _ = writeln!(
                        f,
                        "  component {} - custodian {:<14} KCV shown: ________  matches my form [ ]  initials: ____",
                        i + 1,
                        comp.custodian
                    );
                }
                let _ = writeln!(
                    f,
                    "  combined KCV of '{label}' ({}): ________",
                    form_method(*key_type)
                );
            }
            Step::ExportComponents {
                key, custodians, ..
            } => {
                for (i, c) in custodians.iter().enumerate() {
                    let _ = writeln!(
                        f,
                        "  component {} of '{key}' - custodian {:<14} KCV: ________  sealed in envelope no. ______  initials: ____",
                        i + 1,
                        c
                    );
                }
            }
            Step::WrapKeys { keys, out, .. } => {
                for k in keys {
                    let _ = writeln!(f, "  KCV of '{k}': ________");
                }
                let _ = writeln!(f, "  {out} handed to: {LINE}");
            }
            Step::UnwrapKeys { keys, input, .. } => {
                let _ = writeln!(f, "  {input} received from: {LINE}");
                for k in keys {
                    let _ = writeln!(
                        f,
                        "  KCV of '{k}' shown: ________  same as the sender's form [ ]"
                    );
                }
            }
            Step::ExportPublicKey { out, .. } => {
                let _ = writeln!(
                    f,
                    "  SHA-256 of the public key (first 16 hex digits): ________________"
                );
                let _ = writeln!(f, "  {out} handed to: {LINE}");
            }
            Step::DestroyKey { key, .. } => {
                let _ = writeln!(f, "  label '{key}' typed by: {LINE}");
            }
            Step::EnrolPinQuorum { officers, .. } => {
                for o in officers {
                    let _ = writeln!(
                        f,
                        "  officer {o:<14} share received and typed back [ ]  sealed in envelope no. ______"
                    );
                }
            }
        }
        let (performers, witnesses) = step.roles();
        let _ = writeln!(
            f,
            "  [ ] done   performed by: {}   witnessed by: {}",
            performers.join(", "),
            if witnesses.is_empty() {
                "-".into()
            } else {
                witnesses.join(", ")
            }
        );
    }
    let _ = writeln!(f);
    let _ = writeln!(f, "AT THE END");
    let _ = writeln!(f, "  Ledger file: {LINE}{LINE}");
    let _ = writeln!(f, "  Ledger fingerprint (hex): ________________________________________________________________");
    let _ = writeln!(
        f,
        "  Ledger fingerprint (words, read aloud): {LINE}{LINE}{LINE}"
    );
    let _ = writeln!(
        f,
        "  End time: __________   Outcome: [ ] completed   [ ] aborted (reason on the back)"
    );
    let _ = writeln!(f);
    let _ = writeln!(f, "SIGNATURES: we saw every step above done as written.");
    for r in &c.roles {
        let _ = writeln!(f, "  {:<20} {LINE}{LINE}", r.name);
    }
    f
}
