//! Card lists: the CSV files (`identity,kdd` per line) that per-card DAPs and personalisation batches read.
//!
//! A card list comes from a bureau or an issuer's card-management system, so it is untrusted input: it is
//! read line by line (memory does not grow with the number of cards), every line is bounded, and every
//! problem is an error that names the file, the line and the field.
//!
//! Format: UTF-8 text, one card per line, `identity,kdd`. `identity` is 1 to 64 characters from
//! `A-Z a-z 0-9 . _ : -` (a serial number or a CPLC-derived name); `kdd` is the card's 10-byte key
//! diversification data in hex (20 digits), as INITIALIZE UPDATE reports it. An optional first line
//! `identity,kdd` is a header; blank lines and lines starting with `#` are skipped.

use crate::error::Error;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

/// Longest line accepted, in bytes (a valid line has at most 64 + 1 + 20 characters).
pub const MAX_LINE: usize = 256;

/// One card from a card list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardEntry {
    /// 1-based line number in the file, for error messages and resumption.
    pub line: u64,
    /// The card's identity.
    pub identity: String,
    /// The card's key diversification data.
    pub kdd: [u8; 10],
}

/// Checks a card identity (also used for identities in packages).
pub fn check_identity(identity: &str) -> Result<(), String> {
    if identity.is_empty() || identity.len() > 64 {
        return Err(format!(
            "identity has {} characters; 1 to 64 are allowed",
            identity.chars().count()
        ));
    }
    if let Some(c) = identity
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(format!(
            "identity contains {c:?}; only A-Z a-z 0-9 . _ : - are allowed"
        ));
    }
    Ok(())
}

/// Parses a KDD in hex (20 digits).
pub fn parse_kdd(text: &str) -> Result<[u8; 10], String> {
    let bytes = hex::decode(text).map_err(|_| format!("kdd '{text}' is not hex"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("kdd has {} bytes; a KDD has 10", b.len()))
}

/// Reads a card list one line at a time.
pub struct CardReader<R> {
    path: PathBuf,
    input: R,
    line: u64,
    buf: Vec<u8>,
}

impl CardReader<std::io::BufReader<std::fs::File>> {
    /// Opens a card list file.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let f = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(CardReader::new(path, std::io::BufReader::new(f)))
    }
}

impl<R: BufRead> CardReader<R> {
    /// Reads from any buffered reader; `path` names the source in errors.
    pub fn new(path: &Path, input: R) -> Self {
        CardReader {
            path: path.to_path_buf(),
            input,
            line: 0,
            buf: Vec::with_capacity(MAX_LINE + 1),
        }
    }

    fn bad(&self, field: &str, problem: impl Into<String>) -> Error {
        Error::CardList {
            path: self.path.clone(),
            line: self.line,
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The next card, `None` at the end of the file.
    pub fn next_card(&mut self) -> Result<Option<CardEntry>, Error> {
        loop {
            self.buf.clear();
            let limit = (MAX_LINE + 1) as u64;
            let n = (&mut self.input)
                .take(limit)
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| Error::Io {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.buf.last() != Some(&b'\n') && n > MAX_LINE {
                return Err(self.bad("line", format!("longer than {MAX_LINE} bytes")));
            }
            let text = std::str::from_utf8(&self.buf)
                .map_err(|_| self.bad("line", "not UTF-8"))?
                .trim_end_matches(['\n', '\r']);
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            if self.line == 1 && text.eq_ignore_ascii_case("identity,kdd") {
                continue;
            }
            let mut fields = text.split(',');
            let identity = fields.next().unwrap_or_default().trim();
            let kdd = fields
                .next()
                .ok_or_else(|| self.bad("kdd", "missing (expected identity,kdd)"))?
                .trim();
            if fields.next().is_some() {
                return Err(self.bad("line", "more than two fields (expected identity,kdd)"));
            }
            check_identity(identity).map_err(|p| self.bad("identity", p))?;
            let kdd = parse_kdd(kdd).map_err(|p| self.bad("kdd", p))?;
            return Ok(Some(CardEntry {
                line: self.line,
                identity: identity.to_string(),
                kdd,
            }));
        }
    }
}

impl<R: BufRead> Iterator for CardReader<R> {
    type Item = Result<CardEntry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_card().transpose()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Result<CardEntry, String>> {
        CardReader::new(Path::new("cards.csv"), text.as_bytes())
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn reads_cards_header_comments_and_blank_lines() {
        let got = read("identity,kdd\n# a comment\n\ncard-1,00010203040506070809\r\ncard:2 , 0102030405060708090A\n");
        let cards: Vec<_> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(cards.len(), 2);
        assert_eq!(cards[0].identity, "card-1");
        assert_eq!(cards[0].line, 4);
        assert_eq!(cards[1].kdd[9], 0x0A);
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let cases = [
            ("a,0001\n", "line 1", "kdd"),
            (
                "ok,00010203040506070809\nbad id,00010203040506070809\n",
                "line 2",
                "identity",
            ),
            ("a,zz010203040506070809\n", "line 1", "not hex"),
            ("a\n", "line 1", "missing"),
            ("a,00010203040506070809,x\n", "line 1", "more than two"),
            (",00010203040506070809\n", "line 1", "identity"),
        ];
        for (text, line, what) in cases {
            let got = read(text);
            let err = got.into_iter().find_map(Result::err).unwrap();
            assert!(err.contains(line) && err.contains(what), "{text:?}: {err}");
        }
        let long = format!("{},00010203040506070809\n", "a".repeat(400));
        let err = read(&long).into_iter().find_map(Result::err).unwrap();
        assert!(err.contains("longer than"), "{err}");
        let err = read("a,\u{0}\u{ff}\n")
            .into_iter()
            .find_map(Result::err)
            .unwrap();
        assert!(err.contains("line 1"), "{err}");
    }
}
