//! Where a token PIN comes from.
//!
//! A PIN is never an argument value or part of a script: it is typed at a no-echo prompt, or, for unattended
//! runs in CI, read from a source the operator names explicitly (`env:NAME` or `file:PATH`). A PIN file that
//! other users can read is refused, because it would leak the PIN to every account on the machine.

use crate::error::Error;
use secrecy::{ExposeSecret, SecretString};
use std::path::PathBuf;
use std::str::FromStr;

/// An explicitly named source of a PIN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// Ask at the terminal without echo (the default).
    Prompt,
    /// Read the named environment variable.
    Env(String),
    /// Read the first line of a file readable by its owner only.
    File(PathBuf),
}

impl FromStr for PinSource {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s == "prompt" {
            Ok(PinSource::Prompt)
        } else if let Some(name) = s.strip_prefix("env:").filter(|n| !n.is_empty()) {
            Ok(PinSource::Env(name.to_string()))
        } else if let Some(path) = s.strip_prefix("file:").filter(|p| !p.is_empty()) {
            Ok(PinSource::File(PathBuf::from(path)))
        } else {
            Err(Error::BadPinSource(s.to_string()))
        }
    }
}

impl PinSource {
    /// True when the PIN is not typed by a person (the ledger marks such runs as scripted).
    pub fn is_scripted(&self) -> bool {
        !matches!(self, PinSource::Prompt)
    }

    /// Reads the PIN for the named token.
    pub fn read(&self, token: &str) -> Result<SecretString, Error> {
        let pin = match self {
            PinSource::Prompt => {
                let text = rpassword::prompt_password(format!("PIN for token '{token}': "))
                    .map_err(|e| {
                        Error::PinUnavailable(format!("cannot read from the terminal: {e}"))
                    })?;
                SecretString::from(text)
            }
            PinSource::Env(name) => {
                let text = std::env::var(name).map_err(|_| {
                    Error::PinUnavailable(format!("environment variable {name} is not set"))
                })?;
                SecretString::from(text)
            }
            PinSource::File(path) => {
                check_private(path)?;
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::PinUnavailable(format!("cannot read {}: {e}", path.display()))
                })?;
                let first = text.lines().next().unwrap_or_default().to_string();
                drop(zeroize::Zeroizing::new(text));
                SecretString::from(first)
            }
        };
        if pin.expose_secret().is_empty() {
            return Err(Error::PinUnavailable(format!(
                "the PIN from {self} is empty"
            )));
        }
        Ok(pin)
    }
}

impl std::fmt::Display for PinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinSource::Prompt => write!(f, "prompt"),
            PinSource::Env(n) => write!(f, "env:{n}"),
            PinSource::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

#[cfg(unix)]
fn check_private(path: &std::path::Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::PinUnavailable(format!("cannot read {}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::PinUnavailable(format!(
            "{} can be read by other users (mode {:o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &std::path::Path) -> Result<(), Error> {
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn parses_named_sources_only() {
        assert_eq!(
            "env:X".parse::<PinSource>().unwrap(),
            PinSource::Env("X".into())
        );
        assert_eq!(
            "file:/a".parse::<PinSource>().unwrap(),
            PinSource::File("/a".into())
        );
        assert!("1234".parse::<PinSource>().is_err());
        assert!("env:".parse::<PinSource>().is_err());
    }

    #[test]
    fn refuses_a_pin_file_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        std::fs::write(&p, "1234\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = PinSource::File(p.clone()).read("t").unwrap_err();
        assert!(err.to_string().contains("other users"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let pin = PinSource::File(p).read("t").unwrap();
        assert_eq!(pin.expose_secret(), "1234");
    }
}
