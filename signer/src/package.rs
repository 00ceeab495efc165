//! Packages: one versioned, self-describing file that carries a load file data block (LFDB) and a manifest
//! binding every part by hash.
//!
//! Why a manifest: a package travels from a vendor's CI to an issuer's delivery system; the issuer must be
//! able to check offline that the LFDB is the one the vendor hashed and signed, which CAP policy made it, and
//! for which application. The same inputs always give the same bytes, so a package can be rebuilt and
//! compared.

use crate::cap::{CapFile, LfdbPolicy};
use crate::error::Error;
use gp_core::dap::{lfdb_hash, HashAlg};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The package format's name, first field of every package.
pub const FORMAT: &str = "postissue-package";
/// The package format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Largest package accepted (a Java Card load file is far smaller; this bounds memory on hostile input).
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
}

/// A package file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// The manifest.
    pub manifest: Manifest,
    /// The LFDB (hex).
    pub lfdb: String,
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

impl Package {
    /// Builds a package from a CAP file's bytes.
    pub fn from_cap(source: &[u8], policy: LfdbPolicy, hash: &str) -> Result<Package, Error> {
        let alg = parse_hash(hash)?;
        let cap = CapFile::parse(source)?;
        let lfdb = cap.lfdb(policy);
        let digest = lfdb_hash(alg, &lfdb);
        Ok(Package {
            format: FORMAT.into(),
            version: VERSION,
            manifest: Manifest {
                load_file_aid: hex::encode_upper(cap.package_aid()),
                applets: cap
                    .applets()
                    .iter()
                    .map(|a| hex::encode_upper(&a.aid))
                    .collect(),
                lfdb_policy: policy.to_string(),
                hash: hash.to_string(),
                lfdb_length: lfdb.len() as u64,
                lfdb_hash: hex::encode_upper(digest),
                source_sha256: hex::encode_upper(Sha256::digest(source)),
            },
            lfdb: hex::encode_upper(&lfdb),
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
        f.write_all(&self.to_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Reads and fully checks a package: format, version, every manifest field against the LFDB.
    pub fn read(path: &Path) -> Result<Package, Error> {
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
        let pkg: Package = serde_json::from_slice(&bytes).map_err(|e| {
            bad(
                "file",
                format!("line {} column {}: {e}", e.line(), e.column()),
            )
        })?;
        pkg.check()?;
        Ok(pkg)
    }

    /// Re-checks the manifest against the LFDB it carries.
    pub fn check(&self) -> Result<(), Error> {
        if self.format != FORMAT {
            return Err(bad(
                "format",
                format!("'{}' is not '{FORMAT}'", self.format),
            ));
        }
        if self.version != VERSION {
            return Err(bad(
                "version",
                format!(
                    "{} is not understood (this signer reads {VERSION})",
                    self.version
                ),
            ));
        }
        let lfdb = self.lfdb_bytes()?;
        if lfdb.len() as u64 != self.manifest.lfdb_length {
            return Err(bad("manifest.lfdb_length", "does not match the LFDB"));
        }
        let alg = parse_hash(&self.manifest.hash)?;
        let expect = hex::encode_upper(lfdb_hash(alg, &lfdb));
        if !expect.eq_ignore_ascii_case(&self.manifest.lfdb_hash) {
            return Err(bad(
                "manifest.lfdb_hash",
                "does not match the LFDB: the package was altered",
            ));
        }
        let aid = self.load_file_aid()?;
        if !(5..=16).contains(&aid.len()) {
            return Err(bad("manifest.load_file_aid", "an AID has 5 to 16 bytes"));
        }
        for (i, a) in self.manifest.applets.iter().enumerate() {
            let b =
                hex::decode(a).map_err(|_| bad(&format!("manifest.applets[{i}]"), "not hex"))?;
            if !(5..=16).contains(&b.len()) {
                return Err(bad(
                    &format!("manifest.applets[{i}]"),
                    "an AID has 5 to 16 bytes",
                ));
            }
        }
        Ok(())
    }

    /// The LFDB bytes.
    pub fn lfdb_bytes(&self) -> Result<Vec<u8>, Error> {
        hex::decode(&self.lfdb).map_err(|_| bad("lfdb", "not hex"))
    }

    /// The load file AID bytes.
    pub fn load_file_aid(&self) -> Result<Vec<u8>, Error> {
        hex::decode(&self.manifest.load_file_aid)
            .map_err(|_| bad("manifest.load_file_aid", "not hex"))
    }

    /// The LFDB hash bytes.
    pub fn lfdb_hash(&self) -> Result<Vec<u8>, Error> {
        hex::decode(&self.manifest.lfdb_hash).map_err(|_| bad("manifest.lfdb_hash", "not hex"))
    }

    /// Applet AIDs.
    pub fn applets(&self) -> Result<Vec<Vec<u8>>, Error> {
        self.manifest
            .applets
            .iter()
            .map(|a| hex::decode(a).map_err(|_| bad("manifest.applets", "not hex")))
            .collect()
    }
}
