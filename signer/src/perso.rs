//! Application personalisation through the application's security domain (flow 5): INSTALL [for
//! personalization] names the application, then STORE DATA blocks carry its data, encrypted under the
//! security domain's DEK and MACed by its secure channel.
//!
//! Why through the SD: the application holds no keys of its own; it asks its security domain to decrypt
//! and verify its data (GP's SD services), so the data is protected end to end with the vendor's keys and
//! neither the card issuer nor the bureau's network sees it in clear. The channel's static keys and the
//! DEK are derived in the vendor's token from its master and the card's KDD; the data is encrypted in the
//! token (AES-CBC, zero ICV, `80 00…` padding: what the card's decryption service expects).
//!
//! The data file is untrusted input: hex text of BER-TLV records (whitespace and `#` comments allowed),
//! bounded in size, checked to be well-formed before anything is sent, and cut into STORE DATA blocks
//! on record boundaries.

use crate::channel::SecureChannel;
use crate::diversify::derive_one;
use crate::error::Error;
use crate::gp::open_domain_channel;
use crate::records::{self, Records};
use crate::token::{parse_aid, TokenAccess};
use crate::transport::{connect, CardRef};
use clap::Subcommand;
use gp_core::apdu::CommandApdu;
use gp_core::commands::InstallForPersonalization;
use gp_core::diversify::{KeyRole, Scheme};
use keyman::hsm::{KeyHandle, SecretKeyType, TokenSession, TokenUri, Usage};
use keyman::ledger::{EntryKind, Output};
use std::path::{Path, PathBuf};

/// Largest personalisation data file read, in bytes of text.
pub const MAX_DATA_FILE: u64 = 256 * 1024;
/// Most clear bytes in one STORE DATA block: with `80` padding, channel encryption and the C-MAC the
/// command stays a short APDU.
pub const MAX_BLOCK: usize = 192;
/// STORE DATA P1 bits: last block, encrypted data (b7b6 = 11), BER-TLV (b5b4 = 10).
const P1_LAST: u8 = 0x80;
const P1_ENCRYPTED: u8 = 0x60;
const P1_BER_TLV: u8 = 0x10;

/// Reads a personalisation data file: hex text of BER-TLV records; `#` starts a comment to the end of
/// the line. Returns the bytes after checking every record is well formed.
pub fn read_data_file(path: &Path) -> Result<Vec<u8>, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    let bad =
        |at: String, p: String| Error::Usage(format!("data file {}{at}: {p}", path.display()));
    if len > MAX_DATA_FILE {
        return Err(bad(
            String::new(),
            format!("{len} bytes; at most {MAX_DATA_FILE}"),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let mut data = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or_default();
        let digits: String = content.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = hex::decode(&digits).map_err(|_| {
            bad(
                format!(" line {}", n + 1),
                "not an even number of hex digits".into(),
            )
        })?;
        data.extend_from_slice(&bytes);
    }
    if data.is_empty() {
        return Err(bad(String::new(), "no data".into()));
    }
    tlv_records(&data).map_err(|p| bad(String::new(), p))?;
    Ok(data)
}

/// Splits BER-TLV data into its top-level records, refusing truncated or malformed ones.
pub fn tlv_records(data: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (tag, after_tag) = gp_core::tlv::read_tag(rest)
            .map_err(|e| format!("record {}: tag: {e}", out.len() + 1))?;
        let (len, value) = gp_core::tlv::read_len(after_tag)
            .map_err(|e| format!("record {} (tag {tag:X}): length: {e}", out.len() + 1))?;
        let header = rest.len() - value.len();
        let total = header
            .checked_add(len)
            .filter(|t| *t <= rest.len())
            .ok_or_else(|| format!("record {} (tag {tag:X}) is truncated", out.len() + 1))?;
        let (record, after) = rest.split_at(total);
        out.push(record);
        rest = after;
    }
    Ok(out)
}

/// Groups records into STORE DATA blocks of at most [`MAX_BLOCK`] bytes, never splitting a record.
pub fn blocks(data: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut current = Vec::new();
    for r in tlv_records(data).map_err(Error::Usage)? {
        if r.len() > MAX_BLOCK {
            return Err(Error::Usage(format!(
                "a personalisation record has {} bytes; at most {MAX_BLOCK} fit a STORE DATA block",
                r.len()
            )));
        }
        if current.len() + r.len() > MAX_BLOCK {
            out.push(std::mem::take(&mut current));
        }
        current.extend_from_slice(r);
    }
    if !current.is_empty() {
        out.push(current);
    }
    if out.len() > 256 {
        return Err(Error::Usage(
            "more than 256 STORE DATA blocks; the block number is one byte".into(),
        ));
    }
    Ok(out)
}

/// Sends INSTALL [for personalization] for `app` and the STORE DATA `blocks` through an open channel to
/// the application's security domain, each block encrypted in the token under `dek` (the SD's static DEK)
/// unless `dek` is `None`. Returns the number of blocks sent.
pub fn personalise_app(
    ch: &mut SecureChannel<'_>,
    session: &TokenSession<'_>,
    dek: Option<KeyHandle>,
    app: &[u8],
    blocks: &[Vec<u8>],
) -> Result<usize, Error> {
    let install = InstallForPersonalization {
        application_aid: app.to_vec(),
    }
    .to_apdu()
    .map_err(|e| Error::Card(format!("INSTALL [for personalization]: {e}")))?;
    ch.send_ok(&install, "INSTALL [for personalization]")?;
    let n = blocks.len();
    for (i, block) in blocks.iter().enumerate() {
        let number = u8::try_from(i).map_err(|_| Error::Usage("too many blocks".into()))?;
        let mut p1 = P1_BER_TLV;
        if i + 1 == n {
            p1 |= P1_LAST;
        }
        let data = match dek {
            Some(dek) => {
                p1 |= P1_ENCRYPTED;
                let mut padded = zeroize::Zeroizing::new(block.clone());
                padded.push(0x80);
                while padded.len() % 16 != 0 {
                    padded.push(0x00);
                }
                session.encrypt_cbc(dek, &[0u8; 16], &padded)?
            }
            None => block.clone(),
        };
        let cmd = CommandApdu::new(0x80, 0xE2, p1, number, data, Some(256));
        ch.send_ok(&cmd, &format!("STORE DATA block {i}"))?;
    }
    Ok(n)
}

/// `signer app …`: applications on a card, through their security domain.
#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Personalise an application through its security domain: INSTALL [for personalization], then
    /// STORE DATA blocks encrypted under the SD's DEK and MACed by its secure channel.
    Personalise {
        /// The card: sim:IMAGE-PATH or pcsc:READER-NAME.
        #[arg(long)]
        card: CardRef,
        /// The security domain the application is associated with (AID, hex).
        #[arg(long)]
        sd: String,
        /// The application to personalise (AID, hex).
        #[arg(long)]
        app: String,
        /// The personalisation data: hex text of BER-TLV records (`#` comments allowed).
        #[arg(long)]
        data: PathBuf,
        /// The SD's master key (the vendor's): pkcs11:token=LABEL;object=KEY-LABEL.
        #[arg(long)]
        master: String,
        /// Key diversification scheme of the SD's master: emv, visa2 or aes.
        #[arg(long, default_value = "aes")]
        scheme: Scheme,
        /// Send the data unencrypted (still MACed and channel-encrypted); for non-sensitive data only.
        #[arg(long)]
        plain: bool,
        /// The token's PIN source and module.
        #[command(flatten)]
        token: TokenAccess,
        /// Append a delivery record to this existing ledger (see `keyman ledger init`), anchored in the token.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
}

/// Runs `signer app …`.
pub fn run(command: AppCommand, dry: bool) -> Result<(), Error> {
    let AppCommand::Personalise {
        card,
        sd,
        app,
        data,
        master,
        scheme,
        plain,
        token,
        ledger,
    } = command;
    let sd_aid = parse_aid(&sd, "--sd")?;
    let app_aid = parse_aid(&app, "--app")?;
    let bytes = read_data_file(&data)?;
    let blocks = blocks(&bytes)?;
    let uri = TokenUri::parse(&master)?;
    let label = uri
        .object
        .clone()
        .ok_or_else(|| Error::Usage("--master must name the key with object=LABEL".into()))?;
    if dry {
        println!(
            "would connect to {card} and open SCP03 to SD {} with keys derived from {master} ({scheme})",
            hex::encode_upper(&sd_aid)
        );
        println!(
            "would INSTALL [for personalization] {}",
            hex::encode_upper(&app_aid)
        );
        println!(
            "would send {} STORE DATA block(s), {} bytes of BER-TLV{}",
            blocks.len(),
            bytes.len(),
            if plain {
                ", not encrypted"
            } else {
                ", each encrypted in the token under the SD's DEK"
            }
        );
        return Ok(());
    }
    let mut records = Records::open(ledger.as_deref(), Some(&uri), &token.pin_source)?;
    let (kdd, n) = records.guard("signer app personalise", |records| {
        let mut t = connect(&card)?;
        token.with_session(&uri, |session| {
            let m = session.find_secret_key(&label)?;
            let (mut ch, kdd) = open_domain_channel(t.as_mut(), session, &sd_aid, m, scheme)?;
            let dek = if plain {
                None
            } else {
                Some(derive_one(
                    session,
                    m,
                    scheme,
                    &kdd,
                    KeyRole::Dek,
                    SecretKeyType::Aes128,
                    &[Usage::Encrypt],
                    false,
                )?)
            };
            let n = personalise_app(
                &mut ch,
                session,
                dek.as_ref().map(|d| d.handle()),
                &app_aid,
                &blocks,
            )?;
            let common = vec![
                records::kdd_output(&kdd),
                Output::File {
                    name: data.display().to_string(),
                    sha256: keyman::ledger::Sha256Hash::of(&bytes),
                },
            ];
            records.record(
                EntryKind::Delivery,
                "signer app personalise",
                &format!(
                    "{} personalised through SD {} ({n} block(s))",
                    hex::encode_upper(&app_aid),
                    hex::encode_upper(&sd_aid)
                ),
                &[],
                &common,
                &[],
            )?;
            Ok((kdd, n))
        })
    })?;
    println!(
        "secure channel SCP03 to SD {} of card {} (C-MAC, C-DEC)",
        hex::encode_upper(&sd_aid),
        hex::encode_upper(kdd)
    );
    println!(
        "personalised  {} with {} bytes in {n} STORE DATA block(s){}",
        hex::encode_upper(&app_aid),
        bytes.len(),
        if plain {
            ""
        } else {
            ", encrypted under the SD's DEK"
        }
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn records_and_blocks() {
        let data = hex::decode("DF010400018 6A0".replace(' ', "")).unwrap();
        assert_eq!(tlv_records(&data).unwrap().len(), 1);
        assert!(tlv_records(&data[..5]).is_err());
        let mut many = Vec::new();
        for _ in 0..40 {
            many.extend_from_slice(&data);
        }
        let b = blocks(&many).unwrap();
        assert_eq!(b.len(), 2);
        assert!(b.iter().all(|b| b.len() <= MAX_BLOCK && b.len() % 7 == 0));
        let mut long = vec![0xDF, 0x09, 0x81, 200];
        long.extend_from_slice(&[0; 200]);
        assert!(blocks(&long).is_err());
    }

    #[test]
    fn data_file_comments_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.hex");
        std::fs::write(&p, "# purse\nDF01 04 000186A0 # max\nDF02 04 00000064\n").unwrap();
        assert_eq!(read_data_file(&p).unwrap().len(), 14);
        std::fs::write(&p, "DF01 04 0001\n").unwrap();
        assert!(read_data_file(&p)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        std::fs::write(&p, "DF01 0\n").unwrap();
        assert!(read_data_file(&p)
            .unwrap_err()
            .to_string()
            .contains("line 1"));
    }
}
