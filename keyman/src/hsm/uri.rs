//! RFC 7512 `pkcs11:` URIs: how users name a token (and optionally an object) without slot numbers.
//!
//! Slot numbers change when tokens are added or a machine reboots, so the project only accepts a token
//! label, a serial number, or both. A PIN is never taken from a URI (`pin-value` is refused): PINs come from a
//! prompt or an explicitly named source (see [`crate::pin`]).

use crate::error::Error;
use std::fmt;
use std::path::PathBuf;

/// A parsed `pkcs11:` URI, or a bare token label.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TokenUri {
    /// `token=`: the token label.
    pub token: Option<String>,
    /// `serial=`: the token serial number.
    pub serial: Option<String>,
    /// `manufacturer=`: the token manufacturer.
    pub manufacturer: Option<String>,
    /// `model=`: the token model.
    pub model: Option<String>,
    /// `object=`: an object label inside the token.
    pub object: Option<String>,
    /// `id=`: an object identifier (raw bytes, percent-decoded).
    pub id: Option<Vec<u8>>,
    /// `module-path=` query attribute: which PKCS#11 library to load.
    pub module_path: Option<PathBuf>,
}

impl TokenUri {
    /// Parses either an RFC 7512 URI (`pkcs11:token=issuer;serial=…`) or a bare token label (`issuer`).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let Some(rest) = text.strip_prefix("pkcs11:") else {
            if text.is_empty() {
                return Err(Error::BadUri {
                    uri: text.into(),
                    reason: "empty token name".into(),
                });
            }
            return Ok(TokenUri {
                token: Some(text.to_string()),
                ..TokenUri::default()
            });
        };
        let bad = |reason: String| Error::BadUri {
            uri: text.to_string(),
            reason,
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut uri = TokenUri::default();
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| bad(format!("attribute '{attr}' has no '='")))?;
            let raw = percent_decode(v).map_err(|e| bad(format!("attribute '{k}': {e}")))?;
            let value = || {
                String::from_utf8(raw.clone())
                    .map_err(|_| bad(format!("attribute '{k}' is not UTF-8")))
            };
            let slot = match k {
                "token" => &mut uri.token,
                "serial" => &mut uri.serial,
                "manufacturer" => &mut uri.manufacturer,
                "model" => &mut uri.model,
                "object" => &mut uri.object,
                "id" => {
                    if uri.id.replace(raw.clone()).is_some() {
                        return Err(bad("attribute 'id' given twice".into()));
                    }
                    continue;
                }
                "type" | "library-manufacturer" | "library-description" | "library-version" => {
                    continue
                }
                "slot-id" | "slot-description" | "slot-manufacturer" => {
                    return Err(bad(format!(
                        "'{k}' names a slot; name the token by label or serial instead"
                    )))
                }
                "pin-value" => {
                    return Err(bad(
                        "a PIN may not be given in a URI; use --pin-source".into()
                    ))
                }
                other => return Err(bad(format!("unknown attribute '{other}'"))),
            };
            if slot.replace(value()?).is_some() {
                return Err(bad(format!("attribute '{k}' given twice")));
            }
        }
        for attr in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|a| !a.is_empty())
        {
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| bad(format!("query attribute '{attr}' has no '='")))?;
            let raw = percent_decode(v).map_err(|e| bad(format!("query attribute '{k}': {e}")))?;
            match k {
                "module-path" => {
                    let s = String::from_utf8(raw)
                        .map_err(|_| bad("module-path is not UTF-8".into()))?;
                    uri.module_path = Some(PathBuf::from(s));
                }
                "pin-value" | "pin-source" => {
                    return Err(bad(
                        "a PIN may not be given in a URI; use --pin-source".into()
                    ))
                }
                "module-name" => {}
                other => return Err(bad(format!("unknown query attribute '{other}'"))),
            }
        }
        if uri.token.is_none() && uri.serial.is_none() {
            return Err(bad(
                "name the token with 'token=' (label) and/or 'serial='".into()
            ));
        }
        Ok(uri)
    }

    /// The same URI naming a given object inside the token.
    pub fn with_object(&self, label: &str) -> TokenUri {
        TokenUri {
            object: Some(label.to_string()),
            ..self.clone()
        }
    }
}

fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(|c| (c as char).to_digit(16));
            let lo = bytes.next().and_then(|c| (c as char).to_digit(16));
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(((h << 4) | l) as u8),
                _ => return Err("bad percent-encoding".into()),
            }
        } else {
            out.push(b);
        }
    }
    Ok(out)
}

fn percent_encode(s: &[u8]) -> String {
    let mut out = String::new();
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl fmt::Display for TokenUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (k, v) in [
            ("model", &self.model),
            ("manufacturer", &self.manufacturer),
            ("serial", &self.serial),
            ("token", &self.token),
            ("object", &self.object),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", percent_encode(v.as_bytes())));
            }
        }
        if let Some(id) = &self.id {
            parts.push(format!("id={}", percent_encode(id)));
        }
        write!(f, "pkcs11:{}", parts.join(";"))?;
        if let Some(m) = &self.module_path {
            write!(
                f,
                "?module-path={}",
                percent_encode(m.to_string_lossy().as_bytes())
            )?;
        }
        Ok(())
    }
}

impl fmt::Debug for TokenUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bare_label_names_a_token() {
        let u = TokenUri::parse("issuer").unwrap();
        assert_eq!(u.token.as_deref(), Some("issuer"));
        assert_eq!(u.to_string(), "pkcs11:token=issuer");
    }

    #[test]
    fn rfc7512_attributes_and_percent_decoding() {
        let u = TokenUri::parse(
            "pkcs11:token=My%20Token;serial=1ee7;object=isd-kmc?module-path=/usr/lib/softhsm/libsofthsm2.so",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("My Token"));
        assert_eq!(u.serial.as_deref(), Some("1ee7"));
        assert_eq!(u.object.as_deref(), Some("isd-kmc"));
        assert_eq!(
            u.module_path.as_deref(),
            Some(std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert_eq!(TokenUri::parse(&u.to_string()).unwrap(), u);
    }

    #[test]
    fn refuses_pins_slots_and_unknown_attributes() {
        for bad in [
            "pkcs11:token=a;pin-value=1234",
            "pkcs11:token=a?pin-value=1234",
            "pkcs11:slot-id=0",
            "pkcs11:token=a;colour=blue",
            "pkcs11:object=x",
            "pkcs11:token=a;token=b",
            "pkcs11:token=%zz",
            "",
        ] {
            assert!(TokenUri::parse(bad).is_err(), "{bad}");
        }
    }
}
