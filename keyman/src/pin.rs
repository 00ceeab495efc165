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
            Err(Error::BadPinSource(
                "use env:NAME or file:PATH, or leave it out to be prompted; a PIN is never taken from the command line"
                    .into(),
            ))
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
                let bytes = read_private(path, MAX_PIN_FILE)?;
                if bytes.len() > MAX_PIN_FILE {
                    return Err(Error::PinUnavailable(format!(
                        "{} is larger than {MAX_PIN_FILE} bytes; not a PIN file",
                        path.display()
                    )));
                }
                let text = std::str::from_utf8(&bytes).map_err(|_| {
                    Error::PinUnavailable(format!("{} is not UTF-8", path.display()))
                })?;
                SecretString::from(text.lines().next().unwrap_or_default().to_string())
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

/// PIN sources for the tokens of a ceremony: one for every token, and any number for named tokens
/// (`--pin-source bureau=env:BUREAU_PIN`), so that a ceremony on two organisations' tokens can take each
/// PIN from its own place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinSources {
    default: PinSource,
    named: Vec<(String, PinSource)>,
}

impl Default for PinSources {
    fn default() -> Self {
        PinSources {
            default: PinSource::Prompt,
            named: Vec::new(),
        }
    }
}

impl PinSources {
    /// Parses `--pin-source` values: `SOURCE` for every token, `NAME=SOURCE` for the token the script
    /// names `NAME`. Each may be given once.
    pub fn from_args(args: &[String]) -> Result<PinSources, Error> {
        let mut out = PinSources::default();
        let mut default_given = false;
        for a in args {
            let named = a
                .split_once('=')
                .filter(|(name, _)| !name.is_empty() && !name.contains(':'));
            match named {
                Some((name, source)) => {
                    if out.named.iter().any(|(n, _)| n == name) {
                        return Err(Error::BadPinSource(format!(
                            "token '{name}' is given two PIN sources"
                        )));
                    }
                    out.named.push((name.to_string(), source.parse()?));
                }
                None => {
                    if default_given {
                        return Err(Error::BadPinSource(
                            "a PIN source for every token is given twice".into(),
                        ));
                    }
                    default_given = true;
                    out.default = a.parse()?;
                }
            }
        }
        Ok(out)
    }

    /// The source for the token a script names `name`.
    pub fn for_token(&self, name: &str) -> &PinSource {
        self.named
            .iter()
            .find(|(n, _)| n == name)
            .map_or(&self.default, |(_, s)| s)
    }

    /// Token names given a source of their own, to check them against a script.
    pub fn named(&self) -> impl Iterator<Item = &str> {
        self.named.iter().map(|(n, _)| n.as_str())
    }
}

/// Largest PIN file read, in bytes; only its first line is used.
const MAX_PIN_FILE: usize = 4096;

/// Reads at most `limit + 1` bytes of a secret-bearing file (a PIN file, an answers file) that must be
/// a regular file readable and writable by its owner only; a caller refuses a result longer than `limit`.
///
/// The file is opened once and every check is made on the open handle, so the path cannot be swapped
/// between the check and the read: a symbolic link or anything but a regular file is refused, the
/// opened file must be the one examined before opening (same device and inode), and its permissions are
/// taken from the handle. Errors are [`Error::PinUnavailable`] and never carry the contents.
#[cfg(unix)]
pub(crate) fn read_private(
    path: &std::path::Path,
    limit: usize,
) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fail = |what: &str, e: std::io::Error| {
        Error::PinUnavailable(format!("cannot {what} {}: {e}", path.display()))
    };
    let refuse = |why: String| Error::PinUnavailable(format!("{}: {why}", path.display()));
    // Refuse a link or a device before opening it (opening a FIFO would block, a device may act).
    let named = std::fs::symlink_metadata(path).map_err(|e| fail("read", e))?;
    if named.file_type().is_symlink() {
        return Err(refuse("is a symbolic link; name the file itself".into()));
    }
    if !named.file_type().is_file() {
        return Err(refuse("is not a regular file".into()));
    }
    let file = std::fs::File::open(path).map_err(|e| fail("open", e))?;
    let meta = file.metadata().map_err(|e| fail("read", e))?;
    if !meta.file_type().is_file() || meta.dev() != named.dev() || meta.ino() != named.ino() {
        return Err(refuse(
            "changed while it was being opened; refusing it".into(),
        ));
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(refuse(format!(
            "can be read by other users (mode {:o}); chmod 600 it",
            mode & 0o777
        )));
    }
    let cap = usize::try_from(meta.len())
        .unwrap_or(limit)
        .min(limit)
        .saturating_add(1);
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(cap));
    let take = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(take)
        .read_to_end(&mut bytes)
        .map_err(|e| fail("read", e))?;
    Ok(bytes)
}

#[cfg(not(unix))]
pub(crate) fn read_private(
    path: &std::path::Path,
    limit: usize,
) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| Error::PinUnavailable(format!("cannot open {}: {e}", path.display())))?;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    let take = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(take)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::PinUnavailable(format!("cannot read {}: {e}", path.display())))?;
    Ok(bytes)
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
    fn pin_sources_per_token() {
        let s = PinSources::from_args(&["env:A".into(), "bureau=file:/p".into()]).unwrap();
        assert_eq!(s.for_token("vendor"), &PinSource::Env("A".into()));
        assert_eq!(s.for_token("bureau"), &PinSource::File("/p".into()));
        assert!(PinSources::from_args(&["env:A".into(), "env:B".into()]).is_err());
        assert!(PinSources::from_args(&["x=env:A".into(), "x=env:B".into()]).is_err());
        assert!(PinSources::from_args(&["x=1234".into()]).is_err());
        assert_eq!(
            PinSources::from_args(&[]).unwrap().for_token("t"),
            &PinSource::Prompt
        );
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

    #[test]
    fn refuses_a_symlink_to_a_private_pin_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("pin");
        std::fs::write(&target, "1234\n").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = PinSource::File(link).read("t").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!err.to_string().contains("1234"), "{err}");
        // The file itself is read.
        let pin = PinSource::File(target).read("t").unwrap();
        assert_eq!(pin.expose_secret(), "1234");
    }

    #[test]
    fn refuses_a_pin_path_that_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = PinSource::File(dir.path().to_path_buf())
            .read("t")
            .unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
