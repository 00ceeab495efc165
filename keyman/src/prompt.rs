//! Everything a ceremony asks of the people in the room, and the scripted stand-in used for rehearsals
//! and CI.
//!
//! Why one interface: a ceremony asks for components, PIN shares and confirmations, and shows secrets to
//! one person at a time. In the room a person answers at the terminal (secrets without echo, shown
//! secrets cleared from the screen); in a rehearsal or a CI run a [`Scripted`] source answers instead,
//! from an owner-only file or an environment variable the operator names, and the ledger marks the run as
//! scripted. Every question has a stable id (`component/vendor/kek/1`), so an answers file reads like the
//! checklist it stands in for.

use crate::error::Error;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Largest answers file or variable read, in bytes; the source is operator input, kept bounded.
const MAX_ANSWERS: usize = 256 * 1024;

/// The questions a ceremony asks and the secrets it shows.
pub trait Prompter {
    /// True when a script, not a person, answers (the ledger records it).
    fn scripted(&self) -> bool;

    /// Whether the answer to `id` is known in advance: `None` when a person will be asked.
    fn has_answer(&self, id: &str) -> Option<bool>;

    /// Checks that the prompter can ask (`ask`) and show secrets (`reveal`) before anything is created.
    fn ready(&self, ask: bool, reveal: bool) -> Result<(), Error>;

    /// A secret typed without echo (a component, a PIN share). An empty answer means "not given".
    fn secret(&mut self, id: &str, prompt: &str) -> Result<SecretString, Error>;

    /// A line typed in the open (a typed confirmation, "yes").
    fn line(&mut self, id: &str, prompt: &str) -> Result<String, Error>;

    /// Shows `secret` to the one person named `to`, and only to them.
    fn reveal(&mut self, id: &str, to: &str, heading: &str, secret: &str) -> Result<(), Error>;
}

/// The terminal: prompts on standard error, secrets read without echo, shown secrets written to the
/// controlling terminal only (never to standard output, which may be captured) and cleared afterwards.
#[derive(Debug, Default)]
pub struct Terminal;

impl Prompter for Terminal {
    fn scripted(&self) -> bool {
        false
    }

    fn has_answer(&self, _id: &str) -> Option<bool> {
        None
    }

    fn ready(&self, ask: bool, reveal: bool) -> Result<(), Error> {
        if (ask || reveal)
            && std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/tty")
                .is_err()
        {
            return Err(Error::Answers(
                "this ceremony asks people for input but there is no terminal; run it at a terminal, \
                 or give scripted answers with --answers for a rehearsal"
                    .into(),
            ));
        }
        Ok(())
    }

    fn secret(&mut self, _id: &str, prompt: &str) -> Result<SecretString, Error> {
        let text = rpassword::prompt_password(format!("{prompt}: "))
            .map_err(|e| Error::Answers(format!("cannot read from the terminal: {e}")))?;
        Ok(SecretString::from(text))
    }

    fn line(&mut self, _id: &str, prompt: &str) -> Result<String, Error> {
        eprint!("{prompt}: ");
        let _ = std::io::stderr().flush();
        let mut s = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut s)
            .map_err(|e| Error::Answers(format!("cannot read from standard input: {e}")))?;
        Ok(s.trim().to_string())
    }

    fn reveal(&mut self, _id: &str, to: &str, heading: &str, secret: &str) -> Result<(), Error> {
        let tty_err = |e: std::io::Error| Error::Answers(format!("cannot use the terminal: {e}"));
        let mut tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .map_err(tty_err)?;
        let mut input = std::io::BufReader::new(tty.try_clone().map_err(tty_err)?);
        let mut wait = |tty: &mut std::fs::File, text: &str| -> Result<(), Error> {
            write!(tty, "{text}").map_err(tty_err)?;
            tty.flush().map_err(tty_err)?;
            let mut s = Zeroizing::new(String::new());
            input.read_line(&mut s).map_err(tty_err)?;
            Ok(())
        };
        wait(
            &mut tty,
            &format!(
                "\n{heading}\nOnly {to} may look at the screen now. {to}: press Enter when ready. "
            ),
        )?;
        let shown = Zeroizing::new(format!("\n    {secret}\n\n"));
        tty.write_all(shown.as_bytes()).map_err(tty_err)?;
        wait(
            &mut tty,
            "Write it on your form, then press Enter to clear the screen. ",
        )?;
        // Clear the screen and the scrollback so the value does not stay on the terminal.
        write!(tty, "\x1b[2J\x1b[3J\x1b[H").map_err(tty_err)?;
        tty.flush().map_err(tty_err)?;
        Ok(())
    }
}

/// Where scripted answers come from: `file:PATH` (readable by its owner only) or `env:NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerSource {
    /// A file of `id = value` lines.
    File(PathBuf),
    /// An environment variable holding `id = value` lines.
    Env(String),
}

impl std::str::FromStr for AnswerSource {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if let Some(name) = s.strip_prefix("env:").filter(|n| !n.is_empty()) {
            Ok(AnswerSource::Env(name.to_string()))
        } else if let Some(path) = s.strip_prefix("file:").filter(|p| !p.is_empty()) {
            Ok(AnswerSource::File(PathBuf::from(path)))
        } else {
            Err(Error::Answers(format!(
                "bad answers source '{s}': use file:PATH or env:NAME"
            )))
        }
    }
}

impl std::fmt::Display for AnswerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerSource::File(p) => write!(f, "file:{}", p.display()),
            AnswerSource::Env(n) => write!(f, "env:{n}"),
        }
    }
}

/// Answers read in advance, for rehearsals and CI. Secrets meant for one person's eyes are written, one
/// owner-only file each, to a directory the operator names (`--reveal-to`), and remembered so that a later
/// question with the same id (a custodian asked to type back what they were shown) is answered with it.
pub struct Scripted {
    source: String,
    answers: HashMap<String, SecretString>,
    reveal_dir: Option<PathBuf>,
    revealed: HashMap<String, SecretString>,
}

impl std::fmt::Debug for Scripted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Scripted({}, {} answers, <secret>)",
            self.source,
            self.answers.len()
        )
    }
}

impl Scripted {
    /// Reads and parses the answers from `source`; `reveal_dir` receives shown secrets.
    pub fn load(source: &AnswerSource, reveal_dir: Option<&Path>) -> Result<Scripted, Error> {
        let text = match source {
            AnswerSource::File(path) => {
                let bytes = crate::pin::read_private(path, MAX_ANSWERS).map_err(|e| match e {
                    Error::PinUnavailable(why) => Error::Answers(format!("answers {why}")),
                    other => other,
                })?;
                if bytes.len() > MAX_ANSWERS {
                    return Err(Error::Answers(format!(
                        "answers {} is larger than {MAX_ANSWERS} bytes",
                        path.display()
                    )));
                }
                Zeroizing::new(String::from_utf8(bytes.to_vec()).map_err(|_| {
                    Error::Answers(format!("answers {} is not UTF-8", path.display()))
                })?)
            }
            AnswerSource::Env(name) => Zeroizing::new(std::env::var(name).map_err(|_| {
                Error::Answers(format!(
                    "environment variable {name} (the answers) is not set"
                ))
            })?),
        };
        if let Some(dir) = reveal_dir {
            if !dir.is_dir() {
                return Err(Error::Answers(format!(
                    "--reveal-to {} is not a directory",
                    dir.display()
                )));
            }
        }
        Ok(Scripted {
            source: source.to_string(),
            answers: parse_answers(&text, &source.to_string())?,
            reveal_dir: reveal_dir.map(Path::to_path_buf),
            revealed: HashMap::new(),
        })
    }

    /// Answers given directly (for tests of the library).
    pub fn from_text(text: &str, reveal_dir: Option<&Path>) -> Result<Scripted, Error> {
        Ok(Scripted {
            source: "inline answers".into(),
            answers: parse_answers(text, "inline answers")?,
            reveal_dir: reveal_dir.map(Path::to_path_buf),
            revealed: HashMap::new(),
        })
    }

    fn lookup(&self, id: &str) -> Option<&SecretString> {
        self.answers.get(id).or_else(|| self.revealed.get(id))
    }
}

/// Parses `id = value` lines; `#` starts a comment line. Errors name the line, never the value.
fn parse_answers(text: &str, origin: &str) -> Result<HashMap<String, SecretString>, Error> {
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((id, value)) = line.split_once('=') else {
            return Err(Error::Answers(format!(
                "{origin}:{}: expected `id = value`",
                n + 1
            )));
        };
        let id = id.trim();
        if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::Answers(format!(
                "{origin}:{}: the id before '=' must be one word",
                n + 1
            )));
        }
        if out
            .insert(id.to_string(), SecretString::from(value.trim().to_string()))
            .is_some()
        {
            return Err(Error::Answers(format!(
                "{origin}:{}: '{id}' is answered twice",
                n + 1
            )));
        }
    }
    Ok(out)
}

impl Prompter for Scripted {
    fn scripted(&self) -> bool {
        true
    }

    fn has_answer(&self, id: &str) -> Option<bool> {
        Some(self.lookup(id).is_some())
    }

    fn ready(&self, _ask: bool, reveal: bool) -> Result<(), Error> {
        if reveal && self.reveal_dir.is_none() {
            return Err(Error::Answers(
                "this ceremony shows secrets to people (components or PIN shares); a scripted run \
                 needs --reveal-to DIR to receive them, one owner-only file each"
                    .into(),
            ));
        }
        Ok(())
    }

    fn secret(&mut self, id: &str, _prompt: &str) -> Result<SecretString, Error> {
        Ok(self
            .lookup(id)
            .cloned()
            .unwrap_or_else(|| SecretString::from(String::new())))
    }

    fn line(&mut self, id: &str, _prompt: &str) -> Result<String, Error> {
        Ok(self
            .lookup(id)
            .map(|s| s.expose_secret().to_string())
            .unwrap_or_default())
    }

    fn reveal(&mut self, id: &str, _to: &str, _heading: &str, secret: &str) -> Result<(), Error> {
        let dir = self.reveal_dir.as_ref().ok_or_else(|| {
            Error::Answers("no --reveal-to directory for a secret shown to a person".into())
        })?;
        let file: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("{file}.txt"));
        let mut f = create_private(&path)?;
        let line = Zeroizing::new(format!("{id} = {secret}\n"));
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::Answers(format!("cannot write {}: {e}", path.display())))?;
        self.revealed
            .insert(id.to_string(), SecretString::from(secret.to_string()));
        Ok(())
    }
}

/// Creates a new file readable by its owner only; an existing file is never overwritten.
pub(crate) fn create_private(path: &Path) -> Result<std::fs::File, Error> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::OutputExists(path.to_path_buf())
        } else {
            Error::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn answers_file_must_be_a_private_regular_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("answers");
        std::fs::write(&p, "a/b = secretvalue\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Scripted::load(&AnswerSource::File(p.clone()), None).unwrap_err();
        assert!(e.to_string().contains("other users"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let e = Scripted::load(&AnswerSource::File(link), None).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(!e.to_string().contains("secretvalue"), "{e}");
        let a = Scripted::load(&AnswerSource::File(p), None).unwrap();
        assert_eq!(a.has_answer("a/b"), Some(true));
    }

    #[test]
    fn answers_parse_strictly_and_never_echo_values() {
        let a = Scripted::from_text(
            "# rehearsal\ncomponent/t/k/1 = 0123 4567\n\nconfirm = yes\n",
            None,
        )
        .unwrap();
        assert_eq!(a.has_answer("component/t/k/1"), Some(true));
        assert_eq!(a.has_answer("component/t/k/2"), Some(false));
        for (bad, says) in [
            ("secretvalue", ":1: expected"),
            ("a b = secretvalue", ":1: the id"),
            ("x = 1\nx = secretvalue", ":2: 'x' is answered twice"),
        ] {
            let e = Scripted::from_text(bad, None).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
            assert!(!e.contains("secretvalue"), "{e}");
        }
    }

    #[test]
    fn reveals_go_to_owner_only_files_and_answer_later_questions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut a = Scripted::from_text("", Some(dir.path())).unwrap();
        assert!(a.ready(true, true).is_ok());
        a.reveal("pin-share/t/alice", "alice", "share", "01-ABCD")
            .unwrap();
        let p = dir.path().join("pin-share_t_alice.txt");
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "pin-share/t/alice = 01-ABCD\n"
        );
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            a.secret("pin-share/t/alice", "").unwrap().expose_secret(),
            "01-ABCD"
        );
        // A second reveal of the same id never overwrites the first file.
        assert!(a
            .reveal("pin-share/t/alice", "alice", "share", "x")
            .is_err());
        let none = Scripted::from_text("", None).unwrap();
        assert!(none.ready(true, true).is_err());
    }
}
