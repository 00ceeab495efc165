//! Dual control on any token: a token's user PIN held as M-of-N Shamir shares by officers, rebuilt only
//! in memory when M of them type theirs.
//!
//! Why: a software token (and many HSMs) has one user PIN; whoever knows it can use every key. Enrolled
//! as shares, no officer alone knows the PIN, and the ledger records which officers opened the token.
//! The sharing itself is the `blahaj` crate (GF(256) Shamir, the maintained fork of `sharks` with its
//! coefficient bias fixed); this module adds what people need around it: a random PIN from the token,
//! shares written as hex with check digits that catch a mistyped share before the token sees a wrong PIN
//! (which would cost a try), and a check that each officer types their own share.

use crate::error::Error;
use blahaj::{Share, Sharks};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Bytes of randomness in an enrolled PIN (shown as twice as many hex digits).
pub const PIN_BYTES: usize = 16;

/// Domain tag of the share check digits.
const CHECK_TAG: &[u8] = b"postissue-pin-share-v1";

/// One officer's share of a PIN: its index (1..=255) and value. Wiped on drop; no revealing `Debug`.
pub struct PinShare {
    index: u8,
    value: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for PinShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PinShare({}, <secret>)", self.index)
    }
}

fn check_digits(index: u8, value: &[u8]) -> [u8; 2] {
    let mut h = Sha256::new();
    h.update(CHECK_TAG);
    h.update([index]);
    h.update(value);
    let d: [u8; 32] = h.finalize().into();
    [d[0], d[1]]
}

impl PinShare {
    /// The share's index: officer number `index` in the enrolment's list.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The share as an officer writes it down: `II-VVVV-VVVV-…-CCCC`, index, value in groups of four hex
    /// digits, and four check digits.
    pub fn to_text(&self) -> Zeroizing<String> {
        let hex = Zeroizing::new(hex::encode_upper(self.value.as_slice()));
        let mut out = Zeroizing::new(format!("{:02X}", self.index));
        for (i, c) in hex.chars().enumerate() {
            if i % 4 == 0 {
                out.push('-');
            }
            out.push(c);
        }
        out.push('-');
        out.push_str(&hex::encode_upper(check_digits(self.index, &self.value)));
        out
    }

    /// Parses a share as typed (dashes and spaces anywhere). `who` names it in errors, which never
    /// repeat what was typed.
    pub fn parse(text: &str, who: &str) -> Result<PinShare, Error> {
        let mut digits = Zeroizing::new(String::with_capacity(text.len()));
        for c in text.chars() {
            if c.is_ascii_hexdigit() {
                digits.push(c);
            } else if !matches!(c, '-' | ' ' | '\t') {
                return Err(Error::Quorum(format!(
                    "{who}: a PIN share has only hex digits and dashes"
                )));
            }
        }
        let bytes = Zeroizing::new(hex::decode(digits.as_bytes()).map_err(|_| {
            Error::Quorum(format!(
                "{who}: a PIN share has an even number of hex digits"
            ))
        })?);
        let (Some((&index, rest)), true) = (bytes.split_first(), bytes.len() >= 4) else {
            return Err(Error::Quorum(format!("{who}: the PIN share is too short")));
        };
        let Some((value, check)) = rest.split_last_chunk::<2>() else {
            return Err(Error::Quorum(format!("{who}: the PIN share is too short")));
        };
        if index == 0 || check_digits(index, value) != *check {
            return Err(Error::Quorum(format!(
                "{who}: the PIN share's check digits do not match (a typing mistake?); nothing was sent to the token"
            )));
        }
        Ok(PinShare {
            index,
            value: Zeroizing::new(value.to_vec()),
        })
    }

    /// Constant-time equality, for checking that an officer wrote their share down correctly.
    pub fn same_as(&self, other: &PinShare) -> bool {
        self.index == other.index && bool::from(self.value.as_slice().ct_eq(&other.value))
    }
}

/// A new PIN: the token's random bytes as upper-case hex.
pub fn pin_from_random(random: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    if random.len() < PIN_BYTES {
        return Err(Error::Token("too few random bytes for a PIN".into()));
    }
    Ok(Zeroizing::new(random.to_vec()))
}

/// The PIN text the token is given for PIN bytes.
pub fn pin_text(pin: &[u8]) -> SecretString {
    SecretString::from(hex::encode_upper(pin))
}

fn check_quorum(threshold: usize, count: usize) -> Result<u8, Error> {
    if threshold < 2 || threshold > count || count > 255 {
        return Err(Error::Quorum(format!(
            "a quorum of {threshold} of {count} is not possible: need 2 <= M <= N <= 255"
        )));
    }
    u8::try_from(threshold).map_err(|_| Error::Quorum("threshold too large".into()))
}

/// Splits PIN bytes into `count` shares of which any `threshold` rebuild it; share `i` (1-based) is for
/// officer `i`.
pub fn split(pin: &[u8], threshold: usize, count: usize) -> Result<Vec<PinShare>, Error> {
    let m = check_quorum(threshold, count)?;
    let shares: Vec<PinShare> = Sharks(m)
        .dealer(pin)
        .take(count)
        .map(|s| {
            let bytes = Zeroizing::new(Vec::from(&s));
            let (index, value) = bytes.split_first().map_or((0, &[][..]), |(i, v)| (*i, v));
            PinShare {
                index,
                value: Zeroizing::new(value.to_vec()),
            }
        })
        .collect();
    if shares.len() != count
        || shares
            .iter()
            .enumerate()
            .any(|(i, s)| usize::from(s.index) != i + 1 || s.value.len() != pin.len())
    {
        return Err(Error::Quorum(
            "the share dealer returned unexpected shares".into(),
        ));
    }
    Ok(shares)
}

/// Rebuilds the PIN bytes from at least `threshold` distinct shares.
pub fn rebuild(shares: &[PinShare], threshold: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
    let m = check_quorum(threshold, threshold.max(2))?;
    let mut seen = Vec::new();
    let mut parsed = Vec::new();
    for s in shares {
        if seen.contains(&s.index) {
            return Err(Error::Quorum(format!(
                "share {} was entered twice",
                s.index
            )));
        }
        seen.push(s.index);
        let mut bytes = Zeroizing::new(vec![s.index]);
        bytes.extend_from_slice(&s.value);
        parsed.push(
            Share::try_from(bytes.as_slice())
                .map_err(|_| Error::Quorum("a PIN share is malformed".into()))?,
        );
    }
    if parsed.len() < threshold {
        return Err(Error::Quorum(format!(
            "{} share(s) entered; {threshold} are needed to open the token",
            parsed.len()
        )));
    }
    if shares.iter().any(|s| {
        shares
            .first()
            .is_some_and(|f| f.value.len() != s.value.len())
    }) {
        return Err(Error::Quorum(
            "the shares have different lengths, so they are not from one enrolment".into(),
        ));
    }
    let secret = Sharks(m)
        .recover(parsed.iter())
        .map_err(|e| Error::Quorum(format!("the shares do not rebuild a PIN: {e}")))?;
    Ok(Zeroizing::new(secret))
}

/// The PIN as the token takes it, rebuilt from shares.
pub fn rebuild_pin(shares: &[PinShare], threshold: usize) -> Result<SecretString, Error> {
    let bytes = rebuild(shares, threshold)?;
    let text = pin_text(&bytes);
    if text.expose_secret().is_empty() {
        return Err(Error::Quorum("the shares rebuild an empty PIN".into()));
    }
    Ok(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn any_m_of_n_rebuild_and_fewer_do_not() {
        let pin: Vec<u8> = (0u8..16).collect();
        let shares = split(&pin, 3, 5).unwrap();
        assert_eq!(shares.len(), 5);
        let texts: Vec<_> = shares.iter().map(|s| s.to_text()).collect();
        for combo in [[0, 1, 2], [0, 2, 4], [4, 3, 1], [1, 2, 3]] {
            let picked: Vec<PinShare> = combo
                .iter()
                .map(|i| PinShare::parse(&texts[*i], "officer").unwrap())
                .collect();
            assert_eq!(rebuild(&picked, 3).unwrap().as_slice(), pin.as_slice());
        }
        let two: Vec<PinShare> = [0, 1]
            .iter()
            .map(|i| PinShare::parse(&texts[*i], "officer").unwrap())
            .collect();
        let e = rebuild(&two, 3).unwrap_err().to_string();
        assert!(e.contains("3 are needed"), "{e}");
        assert_eq!(
            rebuild_pin(&two[..1], 2).unwrap_err().to_string(),
            "1 share(s) entered; 2 are needed to open the token"
        );
    }

    #[test]
    fn duplicates_and_typos_are_caught_before_the_token_sees_a_pin() {
        let pin = [7u8; 16];
        let shares = split(&pin, 2, 3).unwrap();
        let t = shares[0].to_text();
        let again = [
            PinShare::parse(&t, "a").unwrap(),
            PinShare::parse(&t, "b").unwrap(),
        ];
        assert!(rebuild(&again, 2)
            .unwrap_err()
            .to_string()
            .contains("entered twice"));
        // Change one digit of the value: the check digits catch it, and the error does not echo it.
        let mut typo = t.to_string();
        let pos = 4;
        let c = typo.as_bytes()[pos];
        let replacement = if c == b'0' { "1" } else { "0" };
        typo.replace_range(pos..pos + 1, replacement);
        let e = PinShare::parse(&typo, "officer-b").unwrap_err().to_string();
        assert!(
            e.starts_with("officer-b: the PIN share's check digits"),
            "{e}"
        );
        assert!(!e.contains(&typo[3..8]), "{e}");
        assert!(PinShare::parse("zz", "x").is_err());
        assert!(PinShare::parse("", "x").is_err());
        assert!(PinShare::parse("00-0000-0000", "x").is_err());
        assert_eq!(format!("{:?}", shares[1]), "PinShare(2, <secret>)");
    }

    #[test]
    fn impossible_quorums_are_refused() {
        assert!(split(&[1; 16], 1, 3).is_err());
        assert!(split(&[1; 16], 4, 3).is_err());
        assert!(split(&[1; 16], 2, 256).is_err());
        assert!(split(&[1; 16], 2, 2).is_ok());
    }
}
