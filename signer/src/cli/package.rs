//! `signer package`, `inspect` and `verify`: making and checking load-file packages.

use super::optional_key_uri;
use clap::Args;
use gp_core::diversify::Scheme;
use keyman::hsm::{Hsm, TokenUri};
use keyman::ledger::{EntryKind, InputFile};
use signer::cap::LfdbPolicy;
use signer::cards::CardReader;
use signer::cipher::CipherKey;
use signer::dap::{DapKey, DapKind};
use signer::package::Package;
use signer::records::{self, Records};
use signer::token::{parse_aid, same_token, TokenAccess};
use signer::Error;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct PackageArgs {
    /// The CAP file (or .ijc: the LFDB as it is).
    pub input: PathBuf,
    /// Where to write the package (never overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// Whether the LFDB includes the Descriptor component (CAP input only).
    #[arg(long, default_value = "without-descriptor")]
    pub lfdb: LfdbPolicy,
    /// LFDB hash algorithm: sha1, sha256, sha384 or sha512.
    #[arg(long, default_value = "sha256")]
    pub hash: String,
    /// DAP key kind: aes, des, rsa or ecdsa.
    #[arg(long, requires = "dap_key")]
    pub dap: Option<String>,
    /// The DAP key (or per-card DAP master): pkcs11:token=LABEL;object=KEY-LABEL.
    #[arg(long, requires = "dap")]
    pub dap_key: Option<String>,
    /// AID of the security domain that verifies the DAP (default: the card domain).
    #[arg(long)]
    pub dap_sd: Option<String>,
    /// Card list (CSV: identity,kdd) for one DAP per card.
    #[arg(long, requires = "diversify")]
    pub cards: Option<PathBuf>,
    /// Per-card DAP key scheme: emv, visa2, aes (kdf3 needs an SP 800-108 KDF in the token).
    #[arg(long, requires = "cards")]
    pub diversify: Option<Scheme>,
    /// Cipher the LFDB (D3/D4) under --cipher-key for the security domain to decrypt.
    #[arg(long, requires = "cipher_key")]
    pub encrypt: bool,
    /// The load-file cipher key: pkcs11:token=LABEL;object=KEY-LABEL (same token as --dap-key).
    #[arg(long, requires = "encrypt")]
    pub cipher_key: Option<String>,
    /// AID of the security domain that deciphers the LFDB (default: --dap-sd, else the card domain).
    #[arg(long)]
    pub cipher_sd: Option<String>,
    #[command(flatten)]
    pub token: TokenAccess,
    /// Append a signing record to this existing ledger (see `keyman ledger init`), anchored in the token.
    #[arg(long)]
    pub ledger: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The package.
    pub package: PathBuf,
    /// Check the DAPs with this key in the token (the DAP key or per-card master).
    #[arg(long)]
    pub dap_key: Option<String>,
    /// Check asymmetric DAPs with this public key (PEM, SubjectPublicKeyInfo).
    #[arg(long, conflicts_with = "dap_key")]
    pub public_key: Option<PathBuf>,
    /// Decipher the ciphered LFDB with this key in the token and check it against the manifest.
    #[arg(long)]
    pub cipher_key: Option<String>,
    #[command(flatten)]
    pub token: TokenAccess,
}

pub fn package(a: PackageArgs, dry: bool) -> Result<(), Error> {
    if a.out.exists() {
        return Err(Error::OutputExists(a.out));
    }
    let hash_alg = signer::package::parse_hash(&a.hash)?;
    let dap_kind = a.dap.as_deref().map(str::parse::<DapKind>).transpose()?;
    let dap_sd = a
        .dap_sd
        .as_deref()
        .map(|s| parse_aid(s, "--dap-sd"))
        .transpose()?
        .unwrap_or_else(|| signer::channel::ISD_AID.to_vec());
    let cipher_sd = match a.cipher_sd.as_deref() {
        Some(s) => parse_aid(s, "--cipher-sd")?,
        None => dap_sd.clone(),
    };
    let (dap_uri, cipher_uri) = dap_and_cipher_keys(a.dap_key.as_deref(), a.cipher_key.as_deref())?;
    let bytes = std::fs::read(&a.input).map_err(|source| Error::Io {
        path: a.input.clone(),
        source,
    })?;
    let is_ijc = a
        .input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ijc"));
    let mut pkg = if is_ijc {
        Package::from_ijc(&bytes, &a.hash)?
    } else {
        Package::from_cap(&bytes, a.lfdb, &a.hash)?
    };
    // Card list checked in full before the first HSM call.
    let mut cards = Vec::new();
    if let Some(path) = &a.cards {
        if dap_kind.is_none() {
            return Err(Error::Usage("--cards needs --dap and --dap-key".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for card in CardReader::open(path)? {
            let card = card?;
            if !seen.insert(card.kdd) {
                return Err(Error::CardList {
                    path: path.clone(),
                    line: card.line,
                    field: "kdd".into(),
                    problem: "a card with this KDD is already listed".into(),
                });
            }
            cards.push(card);
        }
        if cards.is_empty() {
            return Err(Error::Usage(format!("{}: no cards listed", path.display())));
        }
    }
    if dry {
        println!(
            "would read {} and make its LFDB ({}, {} bytes), hash {}",
            a.input.display(),
            pkg.manifest.lfdb_policy,
            pkg.manifest.lfdb_length,
            a.hash
        );
        if let (Some(kind), Some((uri, label))) = (dap_kind, &dap_uri) {
            let per = if cards.is_empty() {
                "one DAP for every card".to_string()
            } else {
                format!(
                    "one DAP per card for {} cards, keys derived with {}",
                    cards.len(),
                    a.diversify.map_or("?", |s| s.name())
                )
            };
            println!(
                "would sign with {} key '{label}' in {uri} for security domain {}: {per}",
                kind.name(),
                hex::encode_upper(&dap_sd)
            );
        }
        if let Some((uri, label)) = &cipher_uri {
            println!(
                "would cipher the LFDB in {uri} under key '{label}' for security domain {}",
                hex::encode_upper(&cipher_sd)
            );
        }
        println!("would write {} (never overwritten)", a.out.display());
        records::print_dry_ledger(a.ledger.as_deref(), "signing");
        return Ok(());
    }
    let mut records = Records::open(
        a.ledger.as_deref(),
        dap_uri.as_ref().or(cipher_uri.as_ref()).map(|(uri, _)| uri),
        &a.token.pin_source,
    )?;
    let result = sign_package(
        &a,
        &mut pkg,
        dap_kind,
        &dap_sd,
        &cipher_sd,
        &cards,
        &dap_uri,
        &cipher_uri,
        hash_alg,
        &mut records,
    );
    if let Err(e) = &result {
        records.abort("signer package", e);
    }
    result
}

#[allow(clippy::too_many_arguments)]
pub fn sign_package(
    a: &PackageArgs,
    pkg: &mut Package,
    dap_kind: Option<DapKind>,
    dap_sd: &[u8],
    cipher_sd: &[u8],
    cards: &[signer::cards::CardEntry],
    dap_uri: &Option<(TokenUri, String)>,
    cipher_uri: &Option<(TokenUri, String)>,
    hash_alg: gp_core::dap::HashAlg,
    records: &mut Records,
) -> Result<(), Error> {
    let mut key_outputs = Vec::new();
    let mut dap_outputs = Vec::new();
    let token_uri = dap_uri.as_ref().or(cipher_uri.as_ref()).map(|(u, _)| u);
    let hsm = token_uri.map(|u| Hsm::for_uri(u, None)).transpose()?;
    let session = match (&hsm, token_uri) {
        (Some(h), Some(u)) => Some(h.open(u, &a.token.pin_source)?),
        _ => None,
    };
    let lfdb = pkg.lfdb_bytes()?;
    let lfdb_hash = pkg.lfdb_hash()?;
    if let (Some(kind), Some((_, label)), Some(session)) = (dap_kind, dap_uri, &session) {
        let key = DapKey::open(session, kind, label, a.diversify)?;
        key.check_hash(hash_alg)?;
        key_outputs.push(key.ledger_output());
        if cards.is_empty() {
            let sig = key.sign(&lfdb_hash)?;
            dap_outputs.push(records::dap_output(dap_sd, None, &sig));
            pkg.manifest.daps.push(key.record(dap_sd, None, &sig));
        } else {
            for card in cards {
                let sig = key.sign_for_card(&card.kdd, &lfdb_hash)?;
                dap_outputs.push(records::dap_output(dap_sd, Some(&card.identity), &sig));
                pkg.manifest
                    .daps
                    .push(key.record(dap_sd, Some((&card.identity, &card.kdd)), &sig));
            }
        }
    }
    if let (Some((_, label)), Some(session)) = (cipher_uri, &session) {
        let key = CipherKey::open(session, label)?;
        key_outputs.push(key.ledger_output());
        let (record, data) = key.encrypt(&lfdb, cipher_sd)?;
        pkg.manifest.cipher = Some(record);
        pkg.ciphered_lfdb = hex::encode_upper(&data);
        pkg.lfdb = String::new();
    }
    pkg.check()?;
    let bytes = pkg.to_bytes();
    signer::package::write_new_file(&a.out, &bytes)?;
    let mut inputs = vec![InputFile::from_path(&a.input)?];
    if let Some(c) = &a.cards {
        inputs.push(InputFile::from_path(c)?);
    }
    let mut common = vec![records::package_output(&bytes)];
    common.extend(key_outputs);
    records.record(
        EntryKind::Signing,
        "signer package",
        &format!("package {}", a.out.display()),
        &inputs,
        &common,
        &dap_outputs,
    )?;
    let m = &pkg.manifest;
    println!(
        "package {}: load file {} ({} bytes LFDB, {}), {} {}",
        a.out.display(),
        m.load_file_aid,
        m.lfdb_length,
        m.lfdb_policy,
        m.hash.to_uppercase(),
        m.lfdb_hash
    );
    if let Some(d) = m.daps.first() {
        println!(
            "DAPs          {} x {} by '{}' for security domain {}",
            m.daps.len(),
            d.algorithm,
            d.key,
            d.sd_aid
        );
    }
    if let Some(c) = &m.cipher {
        println!(
            "ciphered      {} under '{}' ({}) for security domain {}",
            c.algorithm, c.key, c.key_check, c.sd_aid
        );
    }
    if records.is_open() {
        println!(
            "recorded in   {}",
            a.ledger
                .as_deref()
                .map_or(String::new(), |p| p.display().to_string())
        );
    }
    Ok(())
}

pub fn inspect(path: &Path) -> Result<(), Error> {
    let (pkg, bytes) = Package::read_with_bytes(path)?;
    let m = &pkg.manifest;
    println!("format        {} v{}", pkg.format, pkg.version);
    println!(
        "package       SHA256 {}",
        hex::encode_upper(sha2_digest(&bytes))
    );
    println!("load file     {}", m.load_file_aid);
    for a in &m.applets {
        println!("applet        {a}");
    }
    println!("LFDB          {} bytes, {}", m.lfdb_length, m.lfdb_policy);
    println!("LFDB hash     {} {}", m.hash.to_uppercase(), m.lfdb_hash);
    println!("source        SHA256 {}", m.source_sha256);
    if let Some(c) = &m.cipher {
        println!(
            "cipher        {} under '{}' {} for SD {}",
            c.algorithm, c.key, c.key_check, c.sd_aid
        );
        println!("  ICV         {}", c.icv);
        println!("  ciphertext  {} bytes, SHA256 {}", c.length, c.sha256);
    }
    for d in &m.daps {
        let card = match (&d.card, &d.kdd, &d.diversification) {
            (Some(c), Some(k), Some(s)) => format!(" card {c} KDD {k} ({s})"),
            _ => " every card".to_string(),
        };
        println!(
            "DAP           SD {} {} key '{}' {}{card}",
            d.sd_aid, d.algorithm, d.key, d.key_check
        );
        println!("  signature   {}", d.signature);
    }
    Ok(())
}

pub fn sha2_digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

pub fn verify(a: VerifyArgs) -> Result<(), Error> {
    let pkg = Package::read(&a.package)?;
    let m = &pkg.manifest;
    println!(
        "{}: manifest consistent ({} {}, {} DAPs{})",
        a.package.display(),
        m.hash.to_uppercase(),
        m.lfdb_hash,
        m.daps.len(),
        if m.cipher.is_some() {
            ", ciphered LFDB"
        } else {
            ""
        }
    );
    let lfdb_hash = pkg.lfdb_hash()?;
    if let Some(pem) = &a.public_key {
        let text = std::fs::read_to_string(pem).map_err(|source| Error::Io {
            path: pem.clone(),
            source,
        })?;
        let public = signer::dap::public_key_from_pem(&text)?;
        if m.daps.is_empty() {
            return Err(Error::Verification(
                "the package has no DAP to check".into(),
            ));
        }
        for d in &m.daps {
            signer::dap::verify_with_public(&public, d, &lfdb_hash)?;
        }
        println!(
            "DAPs          {} verified with {}",
            m.daps.len(),
            pem.display()
        );
    }
    let (dap_uri, cipher_uri) = dap_and_cipher_keys(a.dap_key.as_deref(), a.cipher_key.as_deref())?;
    let Some((uri, _)) = dap_uri.as_ref().or(cipher_uri.as_ref()) else {
        return Ok(());
    };
    a.token.with_session(uri, |session| {
        if let Some((_, label)) = &dap_uri {
            if m.daps.is_empty() {
                return Err(Error::Verification(
                    "the package has no DAP to check".into(),
                ));
            }
            for d in &m.daps {
                let kind = match signer::package::DapAlgorithm::parse(&d.algorithm) {
                    Some(signer::package::DapAlgorithm::AesCmac) => DapKind::Aes,
                    Some(signer::package::DapAlgorithm::Des3RetailMac) => DapKind::Des,
                    Some(signer::package::DapAlgorithm::EcdsaP256Sha256) => DapKind::Ecdsa,
                    _ => DapKind::Rsa,
                };
                let scheme = d
                    .diversification
                    .as_deref()
                    .map(str::parse::<Scheme>)
                    .transpose()
                    .map_err(|e| Error::Verification(e.to_string()))?;
                let key = DapKey::open(session, kind, label, scheme)?;
                key.verify(d, &lfdb_hash)?;
            }
            println!(
                "DAPs          {} verified with '{label}' in the token",
                m.daps.len()
            );
        }
        if let Some((_, label)) = &cipher_uri {
            let c = m.cipher.as_ref().ok_or_else(|| {
                Error::Verification("the package has no ciphered LFDB to check".into())
            })?;
            let key = CipherKey::open(session, label)?;
            let plain = key.decrypt(c, &pkg.ciphered_bytes()?)?;
            let alg = pkg.hash_alg()?;
            let hash = gp_core::dap::lfdb_hash(alg, &plain);
            if plain.len() as u64 != m.lfdb_length || hash != lfdb_hash {
                return Err(Error::Verification(
                    "the deciphered LFDB does not match manifest.lfdb_hash".into(),
                ));
            }
            signer::cap::LoadFile::from_ijc(&plain)
                .map_err(|e| Error::Verification(format!("the deciphered LFDB: {e}")))?;
            println!(
                "ciphered LFDB deciphers to the LFDB the manifest names ({} bytes)",
                plain.len()
            );
        }
        Ok(())
    })
}

/// The `--dap-key` and `--cipher-key` of `package` and `verify`, which must be in the same token.
#[allow(clippy::type_complexity)]
pub fn dap_and_cipher_keys(
    dap_key: Option<&str>,
    cipher_key: Option<&str>,
) -> Result<(Option<(TokenUri, String)>, Option<(TokenUri, String)>), Error> {
    let dap = optional_key_uri(dap_key, "--dap-key")?;
    let cipher = optional_key_uri(cipher_key, "--cipher-key")?;
    if let (Some((d, _)), Some((c, _))) = (&dap, &cipher) {
        same_token(d, c, "--dap-key and --cipher-key")?;
    }
    Ok((dap, cipher))
}
