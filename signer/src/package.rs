//! Packages: one versioned, self-describing file that carries a load file data block (LFDB), plain or
//! ciphered, its DAP signatures, and a manifest binding every part by hash.
//!
//! Why a manifest: a package travels from a vendor's CI to an issuer's delivery system; the issuer must be
//! able to check offline that the LFDB is the one the vendor hashed and signed, which CAP policy made it, for
//! which application, which key signed it for which card, and that a ciphered LFDB is the one the vendor
//! encrypted. The same inputs give the same bytes (DAPs by RSA-PSS or ECDSA excepted: those signature
//! schemes are randomised in the token, so only their signature fields differ between runs), so a package
//! can be rebuilt and compared.
//!
//! # Format (version 2)
//!
//! Pretty-printed JSON with the fields of [`Package`] in order. The manifest binds the parts:
//! `lfdb_hash` is the LFDB's hash (what INSTALL [for load] carries and every DAP signs), `cipher.sha256`
//! the SHA-256 of the ciphered LFDB, and each DAP record names its security domain, algorithm, key, card
//! and signature. A package with a ciphered LFDB does not carry the plain LFDB: the issuer who delivers it
//! cannot read the vendor's code. Version 1 packages (no DAPs, no cipher) are still read.

use crate::cap::{CapFile, LfdbPolicy, LoadFile};
use crate::error::Error;
use gp_core::dap::{lfdb_hash, HashAlg};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::Path;

/// The package format's name, first field of every package.
pub const FORMAT: &str = "postissue-package";
/// The package format version this build writes.
pub const VERSION: u32 = 2;
/// The oldest package format version this build reads.
pub const OLDEST_VERSION: u32 = 1;
/// Largest package accepted (a Java Card load file is far smaller; this bounds memory on hostile input,
/// and so the number of per-card DAPs one package can carry, about 150,000).
pub const MAX_PACKAGE_BYTES: u64 = 64 * 1024 * 1024;

/// Everything about the load file that a card or an auditor needs, bound to the LFDB by its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Executable load file AID (hex).
    pub load_file_aid: String,
    /// Applet AIDs found in the load file (hex), installable as applications.
    pub applets: Vec<String>,
    /// How the LFDB was made from the CAP file ("with-descriptor", "without-descriptor", or "ijc").
    pub lfdb_policy: String,
    /// Hash algorithm of the LFDB hash ("sha1", "sha256", "sha384", "sha512").
    pub hash: String,
    /// LFDB length in bytes.
    pub lfdb_length: u64,
    /// LFDB hash (hex), as INSTALL [for load] carries it.
    pub lfdb_hash: String,
    /// SHA-256 of the input file (hex), to trace the package back to its source.
    pub source_sha256: String,
    /// DAP signatures over the LFDB hash: one, or one per card.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub daps: Vec<DapRecord>,
    /// How the LFDB was ciphered, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<CipherRecord>,
}

/// One DAP signature and what made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DapRecord {
    /// AID (hex) of the security domain that verifies it on the card (the DAP block's `4F`).
    pub sd_aid: String,
    /// The algorithm ([`DapAlgorithm`] name).
    pub algorithm: String,
    /// Label of the signing key (the master, for per-card DAPs) in the vendor's token.
    pub key: String,
    /// Which key that is without revealing it: symmetric keys' KCV with its method, asymmetric keys'
    /// SHA-256 of the public key (`modulus ‖ exponent` or the SEC1 point).
    pub key_check: String,
    /// The card this DAP is for (per-card DAPs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<String>,
    /// That card's KDD (hex), by which delivery picks the DAP for the card it talks to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdd: Option<String>,
    /// The diversification scheme of the per-card DAP key (`emv`, `visa2`, `aes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diversification: Option<String>,
    /// The signature (hex), the DAP block's `C3`.
    pub signature: String,
}

/// How a ciphered LFDB was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CipherRecord {
    /// AID (hex) of the security domain that decrypts it on the card.
    pub sd_aid: String,
    /// "aes-cbc" or "des3-cbc" (padding `80 00…`, GPC C.6).
    pub algorithm: String,
    /// Label of the cipher key in the vendor's token.
    pub key: String,
    /// The cipher key's KCV with its method.
    pub key_check: String,
    /// The ICV (hex), sent in tag `D3`.
    pub icv: String,
    /// Length of the ciphered LFDB in bytes.
    pub length: u64,
    /// SHA-256 (hex) of the ciphered LFDB.
    pub sha256: String,
}

/// DAP signature algorithms (GPC C.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DapAlgorithm {
    /// AES-CMAC (16 bytes) over a SHA-2 LFDB hash.
    AesCmac,
    /// ISO 9797-1 algorithm 3 retail MAC (8 bytes) over the SHA-1 LFDB hash.
    Des3RetailMac,
    /// RSA ≤ 1024 bits, PKCS#1 v1.5 with SHA-1.
    RsaPkcs1Sha1,
    /// RSA > 1024 bits, PSS with SHA-256 and a 32-byte salt.
    RsaPssSha256,
    /// ECDSA P-256 with SHA-256, `r ‖ s`.
    EcdsaP256Sha256,
}

impl DapAlgorithm {
    /// All algorithms.
    pub const ALL: [DapAlgorithm; 5] = [
        DapAlgorithm::AesCmac,
        DapAlgorithm::Des3RetailMac,
        DapAlgorithm::RsaPkcs1Sha1,
        DapAlgorithm::RsaPssSha256,
        DapAlgorithm::EcdsaP256Sha256,
    ];

    /// The name written in manifests.
    pub fn name(self) -> &'static str {
        match self {
            DapAlgorithm::AesCmac => "aes-cmac",
            DapAlgorithm::Des3RetailMac => "des3-retail-mac",
            DapAlgorithm::RsaPkcs1Sha1 => "rsa-pkcs1-sha1",
            DapAlgorithm::RsaPssSha256 => "rsa-pss-sha256",
            DapAlgorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
        }
    }

    /// Parses a manifest name.
    pub fn parse(name: &str) -> Option<DapAlgorithm> {
        DapAlgorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether a signature of `len` bytes has the right length for this algorithm.
    pub fn signature_len_ok(self, len: usize) -> bool {
        match self {
            DapAlgorithm::AesCmac => len == 16,
            DapAlgorithm::Des3RetailMac => len == 8,
            DapAlgorithm::RsaPkcs1Sha1 => (64..=128).contains(&len),
            DapAlgorithm::RsaPssSha256 => (129..=512).contains(&len),
            DapAlgorithm::EcdsaP256Sha256 => len == 64,
        }
    }

    /// Whether the LFDB hash `alg` may be signed with this algorithm: SHA-1 with 3DES only (GPC Table C-3),
    /// SHA-2 with the others (Amendment D for AES; SHA-1 over SHA-1 is what RSA ≤ 1024 uses, so any hash).
    pub fn hash_ok(self, alg: HashAlg) -> bool {
        match self {
            DapAlgorithm::Des3RetailMac => alg == HashAlg::Sha1,
            DapAlgorithm::AesCmac => alg != HashAlg::Sha1,
            _ => true,
        }
    }
}

/// The plain or ciphered LFDB of a package being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The LFDB in clear.
    Plain(Vec<u8>),
    /// The ciphered LFDB (the plain one is not in the package).
    Ciphered(Vec<u8>),
}

/// A DAP block as LOAD carries it: `(security domain AID, signature)`.
pub type DapBlock = (Vec<u8>, Vec<u8>);

/// A package file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`] when written by this build.
    pub version: u32,
    /// The manifest.
    pub manifest: Manifest,
    /// The LFDB (hex); empty when the package carries a ciphered LFDB instead.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub lfdb: String,
    /// The ciphered LFDB (hex), when the LFDB was ciphered.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ciphered_lfdb: String,
}

fn bad(field: &str, problem: impl Into<String>) -> Error {
    Error::Package {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Parses a hash algorithm name.
pub fn parse_hash(name: &str) -> Result<HashAlg, Error> {
    match name {
        "sha1" => Ok(HashAlg::Sha1),
        "sha256" => Ok(HashAlg::Sha256),
        "sha384" => Ok(HashAlg::Sha384),
        "sha512" => Ok(HashAlg::Sha512),
        other => Err(bad(
            "hash",
            format!("'{other}' is not one of sha1, sha256, sha384, sha512"),
        )),
    }
}

fn hex_field(field: &str, value: &str) -> Result<Vec<u8>, Error> {
    hex::decode(value).map_err(|_| bad(field, "not hex"))
}

fn aid_field(field: &str, value: &str) -> Result<Vec<u8>, Error> {
    let b = hex_field(field, value)?;
    if !(5..=16).contains(&b.len()) {
        return Err(bad(field, "an AID has 5 to 16 bytes"));
    }
    Ok(b)
}

impl Package {
    /// Builds an unsigned package from a CAP file's bytes.
    pub fn from_cap(source: &[u8], policy: LfdbPolicy, hash: &str) -> Result<Package, Error> {
        let cap = CapFile::parse(source)?;
        Package::from_load_file(
            &cap.load_file(policy),
            policy.as_str(),
            Sha256::digest(source).as_slice(),
            hash,
        )
    }

    /// Builds an unsigned package from an IJC file's bytes (the LFDB as it is).
    pub fn from_ijc(source: &[u8], hash: &str) -> Result<Package, Error> {
        let lf = LoadFile::from_ijc(source)?;
        Package::from_load_file(&lf, "ijc", Sha256::digest(source).as_slice(), hash)
    }

    fn from_load_file(
        lf: &LoadFile,
        policy: &str,
        source_sha256: &[u8],
        hash: &str,
    ) -> Result<Package, Error> {
        let alg = parse_hash(hash)?;
        let lfdb = lf.lfdb();
        let digest = lfdb_hash(alg, &lfdb);
        Ok(Package {
            format: FORMAT.into(),
            version: VERSION,
            manifest: Manifest {
                load_file_aid: hex::encode_upper(lf.package_aid()),
                applets: lf
                    .applets()
                    .iter()
                    .map(|a| hex::encode_upper(&a.aid))
                    .collect(),
                lfdb_policy: policy.to_string(),
                hash: hash.to_string(),
                lfdb_length: lfdb.len() as u64,
                lfdb_hash: hex::encode_upper(digest),
                source_sha256: hex::encode_upper(source_sha256),
                daps: Vec::new(),
                cipher: None,
            },
            lfdb: hex::encode_upper(&lfdb),
            ciphered_lfdb: String::new(),
        })
    }

    /// The package's bytes: canonical pretty JSON, the same for the same inputs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Writes the package; never overwrites.
    pub fn write_new(&self, path: &Path) -> Result<(), Error> {
        write_new_file(path, &self.to_bytes())
    }

    /// Reads a package and checks everything that can be checked without keys ([`Package::check`]).
    pub fn read(path: &Path) -> Result<Package, Error> {
        Ok(Package::read_with_bytes(path)?.0)
    }

    /// As [`Package::read`], also returning the file's bytes (for the SHA-256 the ledger records).
    pub fn read_with_bytes(path: &Path) -> Result<(Package, Vec<u8>), Error> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_PACKAGE_BYTES {
            return Err(bad(
                "file",
                format!("{len} bytes is larger than the {MAX_PACKAGE_BYTES}-byte limit"),
            ));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let pkg = Package::parse(&bytes)?;
        Ok((pkg, bytes))
    }

    /// Parses and checks package bytes.
    pub fn parse(bytes: &[u8]) -> Result<Package, Error> {
        let pkg: Package = serde_json::from_slice(bytes).map_err(|e| {
            bad(
                "file",
                format!("line {} column {}: {e}", e.line(), e.column()),
            )
        })?;
        pkg.check()?;
        Ok(pkg)
    }

    /// Re-checks every part against the manifest, offline and without keys: format and version, the LFDB
    /// against its length, hash, load file AID and applets (it is parsed again), the ciphered LFDB against
    /// its length and SHA-256, and every DAP record's form (AIDs, algorithm, signature length, hash
    /// strength, card identity and KDD, no card twice). Signatures themselves need keys:
    /// see `signer verify`.
    pub fn check(&self) -> Result<(), Error> {
        if self.format != FORMAT {
            return Err(bad(
                "format",
                format!("'{}' is not '{FORMAT}'", self.format),
            ));
        }
        if !(OLDEST_VERSION..=VERSION).contains(&self.version) {
            return Err(bad(
                "version",
                format!(
                    "{} is not understood (this signer reads {OLDEST_VERSION} to {VERSION})",
                    self.version
                ),
            ));
        }
        let m = &self.manifest;
        if self.version < 2 && (!m.daps.is_empty() || m.cipher.is_some()) {
            return Err(bad(
                "version",
                "version 1 packages carry no DAPs and no ciphered LFDB",
            ));
        }
        let alg = parse_hash(&m.hash).map_err(|_| {
            bad(
                "manifest.hash",
                format!("'{}' is not one of sha1, sha256, sha384, sha512", m.hash),
            )
        })?;
        let lfdb_hash_bytes = hex_field("manifest.lfdb_hash", &m.lfdb_hash)?;
        if lfdb_hash_bytes.len() != alg.output_len() {
            return Err(bad(
                "manifest.lfdb_hash",
                format!(
                    "has {} bytes; {} gives {}",
                    lfdb_hash_bytes.len(),
                    alg,
                    alg.output_len()
                ),
            ));
        }
        let aid = aid_field("manifest.load_file_aid", &m.load_file_aid)?;
        let mut applets = Vec::new();
        for (i, a) in m.applets.iter().enumerate() {
            applets.push(aid_field(&format!("manifest.applets[{i}]"), a)?);
        }
        hex_field("manifest.source_sha256", &m.source_sha256)?;
        match (
            &m.cipher,
            self.lfdb.is_empty(),
            self.ciphered_lfdb.is_empty(),
        ) {
            (None, false, true) => self.check_plain(alg, &aid, &applets)?,
            (Some(c), true, false) => self.check_ciphered(c)?,
            (None, _, _) => {
                return Err(bad(
                    "lfdb",
                    "a package without manifest.cipher carries the plain LFDB and nothing else",
                ))
            }
            (Some(_), _, _) => return Err(bad(
                "ciphered_lfdb",
                "a package with manifest.cipher carries the ciphered LFDB and not the plain one",
            )),
        }
        let mut cards = HashSet::new();
        for (i, d) in m.daps.iter().enumerate() {
            let f = |name: &str| format!("manifest.daps[{i}].{name}");
            aid_field(&f("sd_aid"), &d.sd_aid)?;
            let algorithm = DapAlgorithm::parse(&d.algorithm).ok_or_else(|| {
                bad(
                    &f("algorithm"),
                    format!("'{}' is not a DAP algorithm", d.algorithm),
                )
            })?;
            if !algorithm.hash_ok(alg) {
                return Err(bad(
                    &f("algorithm"),
                    format!("{} may not sign a {alg} LFDB hash", d.algorithm),
                ));
            }
            let sig = hex_field(&f("signature"), &d.signature)?;
            if !algorithm.signature_len_ok(sig.len()) {
                return Err(bad(
                    &f("signature"),
                    format!("{} bytes is not a {} signature", sig.len(), d.algorithm),
                ));
            }
            match (&d.card, &d.kdd, &d.diversification) {
                (None, None, None) => {
                    if m.daps.len() > 1 && m.daps.iter().any(|o| o.card.is_some()) {
                        return Err(bad(
                            &f("card"),
                            "a package mixes per-card DAPs and a DAP for every card",
                        ));
                    }
                }
                (Some(card), Some(kdd), Some(scheme)) => {
                    crate::cards::check_identity(card).map_err(|p| bad(&f("card"), p))?;
                    let kdd = crate::cards::parse_kdd(kdd).map_err(|p| bad(&f("kdd"), p))?;
                    scheme
                        .parse::<gp_core::diversify::Scheme>()
                        .map_err(|e| bad(&f("diversification"), e.to_string()))?;
                    if !cards.insert((d.sd_aid.to_ascii_uppercase(), kdd)) {
                        return Err(bad(
                            &f("kdd"),
                            "a second DAP for the same card and security domain",
                        ));
                    }
                }
                _ => {
                    return Err(bad(
                        &f("card"),
                        "card, kdd and diversification come together or not at all",
                    ))
                }
            }
        }
        Ok(())
    }

    fn check_plain(&self, alg: HashAlg, aid: &[u8], applets: &[Vec<u8>]) -> Result<(), Error> {
        let m = &self.manifest;
        let lfdb = self.lfdb_bytes()?;
        if lfdb.len() as u64 != m.lfdb_length {
            return Err(bad("manifest.lfdb_length", "does not match the LFDB"));
        }
        let expect = hex::encode_upper(lfdb_hash(alg, &lfdb));
        if !expect.eq_ignore_ascii_case(&m.lfdb_hash) {
            return Err(bad(
                "manifest.lfdb_hash",
                "does not match the LFDB: the package was altered",
            ));
        }
        let lf = LoadFile::from_ijc(&lfdb)
            .map_err(|e| bad("lfdb", format!("not a valid load file: {e}")))?;
        if lf.package_aid() != aid {
            return Err(bad(
                "manifest.load_file_aid",
                "differs from the package AID in the LFDB",
            ));
        }
        let inside: Vec<&[u8]> = lf.applets().iter().map(|a| a.aid.as_slice()).collect();
        let listed: Vec<&[u8]> = applets.iter().map(Vec::as_slice).collect();
        if inside != listed {
            return Err(bad(
                "manifest.applets",
                "differ from the applets in the LFDB",
            ));
        }
        Ok(())
    }

    fn check_ciphered(&self, c: &CipherRecord) -> Result<(), Error> {
        aid_field("manifest.cipher.sd_aid", &c.sd_aid)?;
        let block = match c.algorithm.as_str() {
            "aes-cbc" => 16,
            "des3-cbc" => 8,
            other => {
                return Err(bad(
                    "manifest.cipher.algorithm",
                    format!("'{other}' is not aes-cbc or des3-cbc"),
                ))
            }
        };
        let icv = hex_field("manifest.cipher.icv", &c.icv)?;
        if icv.len() != block {
            return Err(bad(
                "manifest.cipher.icv",
                format!("{} bytes; {} needs {block}", icv.len(), c.algorithm),
            ));
        }
        let data = self.ciphered_bytes()?;
        if data.len() as u64 != c.length {
            return Err(bad(
                "manifest.cipher.length",
                "does not match the ciphered LFDB",
            ));
        }
        if data.is_empty() || data.len() % block != 0 {
            return Err(bad(
                "ciphered_lfdb",
                format!("{} bytes is not whole {block}-byte blocks", data.len()),
            ));
        }
        if data.len() as u64 <= self.manifest.lfdb_length
            || data.len() as u64 > self.manifest.lfdb_length + block as u64
        {
            return Err(bad(
                "manifest.lfdb_length",
                "does not fit the ciphered LFDB's length",
            ));
        }
        let sha = hex::encode_upper(Sha256::digest(&data));
        if !sha.eq_ignore_ascii_case(&c.sha256) {
            return Err(bad(
                "manifest.cipher.sha256",
                "does not match the ciphered LFDB: the package was altered",
            ));
        }
        Ok(())
    }

    /// The LFDB bytes (fails for a ciphered package, which does not carry them).
    pub fn lfdb_bytes(&self) -> Result<Vec<u8>, Error> {
        if self.lfdb.is_empty() {
            return Err(bad(
                "lfdb",
                "the package carries a ciphered LFDB only; decrypting it needs the cipher key",
            ));
        }
        hex_field("lfdb", &self.lfdb)
    }

    /// The ciphered LFDB bytes (empty for a plain package).
    pub fn ciphered_bytes(&self) -> Result<Vec<u8>, Error> {
        hex_field("ciphered_lfdb", &self.ciphered_lfdb)
    }

    /// The load file AID bytes.
    pub fn load_file_aid(&self) -> Result<Vec<u8>, Error> {
        hex_field("manifest.load_file_aid", &self.manifest.load_file_aid)
    }

    /// The LFDB hash bytes.
    pub fn lfdb_hash(&self) -> Result<Vec<u8>, Error> {
        hex_field("manifest.lfdb_hash", &self.manifest.lfdb_hash)
    }

    /// The LFDB hash algorithm.
    pub fn hash_alg(&self) -> Result<HashAlg, Error> {
        parse_hash(&self.manifest.hash)
    }

    /// Applet AIDs.
    pub fn applets(&self) -> Result<Vec<Vec<u8>>, Error> {
        self.manifest
            .applets
            .iter()
            .map(|a| hex::decode(a).map_err(|_| bad("manifest.applets", "not hex")))
            .collect()
    }

    /// The DAP blocks to send to the card with this KDD: every DAP made for all cards, plus the per-card
    /// DAPs made for this card (matched by KDD). Fails when the package has per-card DAPs and none is for
    /// this card: the card would refuse the load, so it is not attempted.
    pub fn dap_blocks_for(&self, kdd: &[u8; 10]) -> Result<Vec<DapBlock>, Error> {
        let mut out = Vec::new();
        let mut per_card = false;
        for (i, d) in self.manifest.daps.iter().enumerate() {
            let f = |name: &str| format!("manifest.daps[{i}].{name}");
            let for_this = match &d.kdd {
                None => true,
                Some(k) => {
                    per_card = true;
                    crate::cards::parse_kdd(k).map_err(|p| bad(&f("kdd"), p))? == *kdd
                }
            };
            if for_this {
                out.push((
                    hex_field(&f("sd_aid"), &d.sd_aid)?,
                    hex_field(&f("signature"), &d.signature)?,
                ));
            }
        }
        if per_card && out.is_empty() {
            return Err(bad(
                "manifest.daps",
                format!(
                    "no DAP was made for the card with KDD {}; it would refuse the load",
                    hex::encode_upper(kdd)
                ),
            ));
        }
        Ok(out)
    }

    /// SHA-256 of the package bytes, the identity the ledger records.
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.to_bytes()).into()
    }
}

/// Writes a new file in one go and syncs it; refuses to overwrite.
pub fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                Error::OutputExists(path.to_path_buf())
            } else {
                Error::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
}
