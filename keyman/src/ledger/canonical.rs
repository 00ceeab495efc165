//! The canonical encoding of an entry, and the rules every field must meet.
//!
//! Encoding and checking are one pass on purpose: a field cannot reach the hash without having been
//! checked, and the writer and the verifier apply exactly the same rules. The encoding itself is specified
//! in the [module documentation of `ledger`](super).

use sha2::Digest as _;

use super::entry::{parse_hex_lower, EntryBody, EntryHash, EntryKind, Output, Salt};
use super::time;

/// Domain-separation tag and format version, the first field of every encoding.
pub(crate) const DOMAIN: &str = "postissue-ledger-v1";

/// Longest name-like text (ceremony, step, role, person, label, custodian, card identity), in bytes.
pub(crate) const MAX_NAME: usize = 256;
/// Longest file name or path, in bytes.
pub(crate) const MAX_PATH: usize = 4096;
/// Longest abort message, in bytes.
pub(crate) const MAX_ERROR: usize = 4096;
/// Longest PEM block, in bytes (an RSA-4096 public key is under 1 KiB).
pub(crate) const MAX_PEM: usize = 16 * 1024;
/// Most items in any one list of an entry.
pub(crate) const MAX_ITEMS: usize = 1024;

/// A field that breaks a rule: its path in the entry and the rule.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub field: String,
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Characters that could make a printed ledger lie to its reader: control characters (terminal escapes,
/// line breaks) and Unicode bidirectional overrides (text that displays in a different order than stored).
pub(crate) fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// The canonical encoding under construction.
struct Enc(Vec<u8>);

impl Enc {
    fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn text(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn flag(&mut self, b: bool) {
        self.0.push(u8::from(b));
    }
    fn count(&mut self, field: &str, n: usize) -> Result<(), Invalid> {
        if n > MAX_ITEMS {
            return Err(invalid(field, format!("more than {MAX_ITEMS} items")));
        }
        self.u64(n as u64);
        Ok(())
    }

    /// Checks and encodes a name-like text field.
    fn name(&mut self, field: &str, s: &str, max: usize) -> Result<(), Invalid> {
        check_text(field, s, max)?;
        self.text(s);
        Ok(())
    }

    /// Checks a lower-case hex field of `min..=max` bytes and encodes the bytes it denotes.
    fn hex(&mut self, field: &str, s: &str, min: usize, max: usize) -> Result<(), Invalid> {
        let b = parse_hex_lower(s).map_err(|r| invalid(field, r))?;
        if b.len() < min || b.len() > max {
            return Err(invalid(
                field,
                format!("{} bytes; must be {min} to {max}", b.len()),
            ));
        }
        self.bytes(&b);
        Ok(())
    }
}

fn check_text(field: &str, s: &str, max: usize) -> Result<(), Invalid> {
    if s.is_empty() {
        return Err(invalid(field, "empty"));
    }
    if s.len() > max {
        return Err(invalid(field, format!("longer than {max} bytes")));
    }
    if s.chars().any(is_deceptive) {
        return Err(invalid(
            field,
            "contains a control or bidirectional-override character",
        ));
    }
    Ok(())
}

fn check_key_type(field: &str, s: &str) -> Result<(), Invalid> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be 1 to 32 letters, digits, '-', '_' or '.'",
        ))
    }
}

/// A PEM block whose type label ends in `PUBLIC KEY`, with base64 lines between matching BEGIN and END
/// lines. Anything mentioning `PRIVATE` is refused outright: that is the mistake this check exists for.
fn check_public_pem(field: &str, pem: &str) -> Result<(), Invalid> {
    let bad = |why: &str| Err(invalid(field, why.to_string()));
    if pem.len() > MAX_PEM {
        return bad("PEM text too long");
    }
    if pem.to_ascii_uppercase().contains("PRIVATE") {
        return bad("looks like a private key; only public keys may be recorded");
    }
    if !pem
        .bytes()
        .all(|b| b == b'\n' || (b' '..=b'~').contains(&b))
    {
        return bad("PEM text must be printable ASCII lines separated by \\n");
    }
    let body = pem.strip_suffix('\n').unwrap_or(pem);
    let mut lines = body.split('\n');
    let (Some(first), Some(last)) = (lines.next(), lines.next_back()) else {
        return bad("not a PEM block");
    };
    let (Some(begin), Some(end)) = (
        first
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----")),
        last.strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----")),
    ) else {
        return bad("not a PEM block");
    };
    if begin != end || !begin.ends_with("PUBLIC KEY") {
        return bad("PEM type must be a PUBLIC KEY with matching BEGIN and END lines");
    }
    let mut any = false;
    for line in lines {
        any = true;
        if line.is_empty()
            || !line
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        {
            return bad("PEM body lines must be base64");
        }
    }
    if !any {
        return bad("PEM block has no body");
    }
    Ok(())
}

fn encode_output(e: &mut Enc, i: usize, o: &Output) -> Result<(), Invalid> {
    let f = |name: &str| format!("outputs[{i}].{name}");
    match o {
        Output::Key {
            label,
            id_hex,
            key_type,
            kcv_hex,
            kcv_method,
        } => {
            e.text("key");
            e.name(&f("label"), label, MAX_NAME)?;
            e.hex(&f("id_hex"), id_hex, 0, 64)?;
            check_key_type(&f("key_type"), key_type)?;
            e.text(key_type);
            match (kcv_hex, kcv_method) {
                (Some(kcv), Some(method)) => {
                    e.flag(true);
                    e.hex(&f("kcv_hex"), kcv, 2, 5)?;
                    e.flag(true);
                    e.text(method.as_str());
                }
                (None, None) => {
                    e.flag(false);
                    e.flag(false);
                }
                _ => return Err(invalid(f("kcv_method"), "a KCV and its method go together")),
            }
        }
        Output::Component {
            label,
            index,
            count,
            custodian,
            kcv_hex,
            kcv_method,
        } => {
            e.text("component");
            e.name(&f("label"), label, MAX_NAME)?;
            if *count == 0 || *count > 255 || *index == 0 || index > count {
                return Err(invalid(
                    f("index"),
                    format!("component {index} of {count} is out of range"),
                ));
            }
            e.u64(u64::from(*index));
            e.u64(u64::from(*count));
            e.name(&f("custodian"), custodian, MAX_NAME)?;
            e.hex(&f("kcv_hex"), kcv_hex, 2, 5)?;
            e.text(kcv_method.as_str());
        }
        Output::PublicKey { label, pem } => {
            e.text("public-key");
            e.name(&f("label"), label, MAX_NAME)?;
            check_public_pem(&f("pem"), pem)?;
            e.text(pem);
        }
        Output::Destroyed { label, id_hex } => {
            e.text("destroyed");
            e.name(&f("label"), label, MAX_NAME)?;
            e.hex(&f("id_hex"), id_hex, 0, 64)?;
        }
        Output::File { name, sha256 } => {
            e.text("file");
            e.name(&f("name"), name, MAX_PATH)?;
            e.bytes(sha256.as_bytes());
        }
        Output::Package { sha256 } => {
            e.text("package");
            e.bytes(sha256.as_bytes());
        }
        Output::Dap {
            sd_aid_hex,
            card,
            dap_hex,
        } => {
            e.text("dap");
            e.hex(&f("sd_aid_hex"), sd_aid_hex, 5, 16)?;
            match card {
                Some(card) => {
                    e.flag(true);
                    e.name(&f("card"), card, MAX_NAME)?;
                }
                None => e.flag(false),
            }
            e.hex(&f("dap_hex"), dap_hex, 8, 512)?;
        }
        Output::Card { identity } => {
            e.text("card");
            e.name(&f("identity"), identity, MAX_NAME)?;
        }
    }
    Ok(())
}

/// Checks every field of an entry and returns its canonical encoding.
pub(crate) fn encode(
    seq: u64,
    time_utc: &str,
    body: &EntryBody,
    salt: &Salt,
    prev: &EntryHash,
) -> Result<Vec<u8>, Invalid> {
    let mut e = Enc(Vec::with_capacity(512));
    e.text(DOMAIN);
    if seq == 0 {
        return Err(invalid("seq", "sequence numbers start at 1"));
    }
    e.u64(seq);
    time::check_utc(time_utc).map_err(|r| invalid("time", r))?;
    e.text(time_utc);
    e.text(body.kind.as_str());
    e.name("ceremony", &body.ceremony, MAX_NAME)?;
    match &body.step {
        Some(step) => {
            e.flag(true);
            e.name("step", step, MAX_NAME)?;
        }
        None => e.flag(false),
    }
    e.count("participants", body.participants.len())?;
    for (i, p) in body.participants.iter().enumerate() {
        e.name(&format!("participants[{i}].role"), &p.role, MAX_NAME)?;
        e.name(&format!("participants[{i}].name"), &p.name, MAX_NAME)?;
    }
    e.flag(body.scripted);
    e.count("inputs", body.inputs.len())?;
    for (i, input) in body.inputs.iter().enumerate() {
        e.name(&format!("inputs[{i}].name"), &input.name, MAX_PATH)?;
        e.bytes(input.sha256.as_bytes());
    }
    e.count("outputs", body.outputs.len())?;
    for (i, o) in body.outputs.iter().enumerate() {
        encode_output(&mut e, i, o)?;
    }
    match (&body.error, body.kind == EntryKind::Abort) {
        (Some(error), true) => {
            e.flag(true);
            e.name("error", error, MAX_ERROR)?;
        }
        (None, false) => e.flag(false),
        (None, true) => return Err(invalid("error", "an abort entry must say why")),
        (Some(_), false) => return Err(invalid("error", "only abort entries carry an error")),
    }
    e.bytes(salt.as_bytes());
    e.bytes(prev.as_bytes());
    Ok(e.0)
}

/// The entry hash: SHA-256 of the canonical encoding.
pub(crate) fn entry_hash(encoding: &[u8]) -> EntryHash {
    EntryHash(sha2::Sha256::digest(encoding).into())
}

/// Makes free-form abort text fit the rules instead of refusing it: an abort must always be recordable.
pub(crate) fn sanitize_error(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_ERROR));
    for c in s.chars().map(|c| if is_deceptive(c) { ' ' } else { c }) {
        if out.len() + c.len_utf8() > MAX_ERROR {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push_str("(no message)");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ledger::entry::{InputFile, KcvMethod, Sha256Hash};

    const PEM: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\nAAAA==\n-----END PUBLIC KEY-----\n";

    fn sample() -> EntryBody {
        EntryBody::new(EntryKind::Step, "issuer-master")
            .step("generate-enc")
            .participant("officer", "Alice")
            .participant("witness", "Bob")
            .scripted(true)
            .input(InputFile {
                name: "ceremonies/issuer-master.ron".into(),
                sha256: Sha256Hash::of(b"script"),
            })
            .output(Output::Key {
                label: "isd-enc".into(),
                id_hex: "01".into(),
                key_type: "AES-128".into(),
                kcv_hex: Some("504a77".into()),
                kcv_method: Some(KcvMethod::AesOnes),
            })
            .output(Output::PublicKey {
                label: "dap".into(),
                pem: PEM.into(),
            })
    }

    /// Known answer, computed independently from the specification in the module docs (a few lines of
    /// Python over `struct.pack(">Q", ...)` and `hashlib.sha256`), so the spec and the code agree.
    #[test]
    fn known_answer() {
        let enc = encode(
            1,
            "2025-01-02T03:04:05Z",
            &sample(),
            &Salt([0x11; 16]),
            &EntryHash::GENESIS,
        )
        .unwrap();
        assert_eq!(entry_hash(&enc).to_string(), KNOWN_HASH);
    }
    const KNOWN_HASH: &str = "39f8eea907c9650532ddb1f3361f0b6ddc66c5c72f85881fb1c0231148586667";

    #[test]
    fn every_field_moves_the_hash() {
        let base = sample();
        let h = |b: &EntryBody, seq, t: &str, salt: u8, prev: u8| {
            entry_hash(&encode(seq, t, b, &Salt([salt; 16]), &EntryHash([prev; 32])).unwrap())
        };
        let t = "2025-01-02T03:04:05Z";
        let h0 = h(&base, 1, t, 0, 0);
        assert_ne!(h0, h(&base, 2, t, 0, 0));
        assert_ne!(h0, h(&base, 1, "2025-01-02T03:04:06Z", 0, 0));
        assert_ne!(h0, h(&base, 1, t, 1, 0));
        assert_ne!(h0, h(&base, 1, t, 0, 1));
        assert_ne!(h0, h(&base.clone().scripted(false), 1, t, 0, 0));
        let mut b = base.clone();
        b.step = None;
        assert_ne!(h0, h(&b, 1, t, 0, 0));
        // Moving a boundary between two fields must change the encoding (length prefixes).
        let mut b1 = base.clone();
        b1.participants.truncate(0);
        let b1 = b1
            .participant("officer", "AliceB")
            .participant("witness", "ob");
        let mut b2 = base;
        b2.participants.truncate(0);
        let b2 = b2
            .participant("officer", "Alice")
            .participant("witness", "Bob");
        assert_ne!(h(&b1, 1, t, 0, 0), h(&b2, 1, t, 0, 0));
    }

    #[test]
    fn rules_refuse_what_must_not_be_recorded() {
        let t = "2025-01-02T03:04:05Z";
        let refuse = |b: EntryBody| encode(1, t, &b, &Salt([0; 16]), &EntryHash::GENESIS).is_err();
        let key = |kcv: &str| Output::Key {
            label: "k".into(),
            id_hex: "".into(),
            key_type: "AES-256".into(),
            kcv_hex: Some(kcv.into()),
            kcv_method: Some(KcvMethod::AesOnes),
        };
        let step = || EntryBody::new(EntryKind::Step, "c");
        // A whole AES key passed off as a KCV.
        assert!(refuse(step().output(key(&"ab".repeat(16)))));
        assert!(refuse(step().output(key("ABCDEF"))));
        assert!(!refuse(step().output(key("abcdef"))));
        let private = PEM.replace("PUBLIC", "PRIVATE");
        assert!(refuse(step().output(Output::PublicKey {
            label: "k".into(),
            pem: private
        })));
        let rsa_private = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(refuse(step().output(Output::PublicKey {
            label: "k".into(),
            pem: rsa_private.into()
        })));
        assert!(refuse(step().output(Output::PublicKey {
            label: "k".into(),
            pem: "AAAA".into()
        })));
        assert!(refuse(step().participant("officer", "Eve\u{1b}[2J")));
        assert!(refuse(step().participant("officer", "Eve\u{202e}")));
        assert!(refuse(step().participant("officer", "")));
        assert!(refuse(EntryBody::new(EntryKind::Abort, "c")));
        let mut with_error = step();
        with_error.error = Some("x".into());
        assert!(refuse(with_error));
        assert!(refuse(step().output(Output::Component {
            label: "k".into(),
            index: 3,
            count: 2,
            custodian: "Carol".into(),
            kcv_hex: "abcdef".into(),
            kcv_method: KcvMethod::Des3Zeros,
        })));
        assert!(encode(0, t, &step(), &Salt([0; 16]), &EntryHash::GENESIS).is_err());
        assert!(encode(1, "yesterday", &step(), &Salt([0; 16]), &EntryHash::GENESIS).is_err());
    }

    #[test]
    fn sanitize_keeps_aborts_recordable() {
        assert_eq!(sanitize_error("bad\nthing\u{1b}"), "bad thing ");
        assert_eq!(sanitize_error(""), "(no message)");
        let long = "é".repeat(MAX_ERROR);
        let s = sanitize_error(&long);
        assert!(s.len() <= MAX_ERROR && s.chars().all(|c| c == 'é'));
    }
}
