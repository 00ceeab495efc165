//! Ciphered load files (GPC C.6, tags `D3`/`D4`): the LFDB encrypted in the vendor's token under a key the
//! card's security domain also holds, so the issuer who delivers the package never sees the vendor's code.
//!
//! Encryption is CBC with `80 00…` padding (AES-CBC for AES keys, 3DES-CBC for 3DES keys). The ICV is
//! made deterministically so that the same inputs give the same package: it is the ECB encryption, under
//! the cipher key, of the first block of SHA-256(LFDB). It is sent in `D3`. The only thing this reveals is
//! whether two packages carry the same LFDB, which their LFDB hashes show anyway.

use crate::error::Error;
use crate::package::CipherRecord;
use keyman::hsm::{Kcv, KeyHandle, SecretKeyType, TokenSession};
use keyman::ledger::Output;
use sha2::{Digest, Sha256};

/// A load-file cipher key in the token.
pub struct CipherKey<'s, 'h> {
    session: &'s TokenSession<'h>,
    handle: KeyHandle,
    label: String,
    kcv: Kcv,
    id: Vec<u8>,
}

fn block_len(key: KeyHandle) -> usize {
    if key.key_type().is_some_and(SecretKeyType::is_des) {
        8
    } else {
        16
    }
}

impl<'s, 'h> CipherKey<'s, 'h> {
    /// Finds the cipher key labelled `label`; it must be allowed to encrypt (which also gives its KCV).
    pub fn open(session: &'s TokenSession<'h>, label: &str) -> Result<CipherKey<'s, 'h>, Error> {
        let handle = session.find_secret_key(label)?;
        let info = session.key_info(handle)?;
        if !info.usages.contains(&keyman::hsm::Usage::Encrypt) {
            return Err(Error::Usage(format!(
                "--cipher-key: key '{label}' may not encrypt"
            )));
        }
        let kcv = session.kcv(handle)?;
        Ok(CipherKey {
            session,
            handle,
            label: label.to_string(),
            kcv,
            id: info.id,
        })
    }

    /// What the ledger records about the key.
    pub fn ledger_output(&self) -> Output {
        Output::Key {
            label: self.label.clone(),
            id_hex: hex::encode(&self.id),
            key_type: self
                .handle
                .key_type()
                .map_or("unknown", SecretKeyType::name)
                .into(),
            kcv_hex: Some(hex::encode(self.kcv.value)),
            kcv_method: Some(crate::dap::ledger_kcv_method(self.kcv.method)),
        }
    }

    fn icv(&self, lfdb: &[u8]) -> Result<Vec<u8>, Error> {
        let n = block_len(self.handle);
        let digest = Sha256::digest(lfdb);
        let first = digest.get(..n).unwrap_or_default();
        Ok(self.session.encrypt_ecb(self.handle, first)?)
    }

    /// Encrypts `lfdb` for the security domain `sd_aid`: the manifest record and the ciphered bytes.
    pub fn encrypt(&self, lfdb: &[u8], sd_aid: &[u8]) -> Result<(CipherRecord, Vec<u8>), Error> {
        let n = block_len(self.handle);
        let icv = self.icv(lfdb)?;
        let mut padded = lfdb.to_vec();
        padded.push(0x80);
        while padded.len() % n != 0 {
            padded.push(0);
        }
        let data = self.session.encrypt_cbc(self.handle, &icv, &padded)?;
        let record = CipherRecord {
            sd_aid: hex::encode_upper(sd_aid),
            algorithm: if n == 8 { "des3-cbc" } else { "aes-cbc" }.into(),
            key: self.label.clone(),
            key_check: self.kcv.to_string(),
            icv: hex::encode_upper(&icv),
            length: data.len() as u64,
            sha256: hex::encode_upper(Sha256::digest(&data)),
        };
        Ok((record, data))
    }

    /// Decrypts a ciphered LFDB in the token and removes the padding (for `signer verify`).
    pub fn decrypt(&self, record: &CipherRecord, data: &[u8]) -> Result<Vec<u8>, Error> {
        if record.key_check != self.kcv.to_string() {
            return Err(Error::Verification(format!(
                "the package was ciphered under key {}, not under '{}' ({})",
                record.key_check, self.label, self.kcv
            )));
        }
        let icv = hex::decode(&record.icv)
            .map_err(|_| Error::Verification("manifest.cipher.icv is not hex".into()))?;
        let plain = self.session.decrypt_cbc(self.handle, &icv, data)?;
        let end = plain
            .iter()
            .rposition(|b| *b != 0)
            .filter(|at| plain.get(*at) == Some(&0x80))
            .ok_or_else(|| {
                Error::Verification("the deciphered LFDB has no 80 00… padding".into())
            })?;
        Ok(plain.get(..end).unwrap_or_default().to_vec())
    }
}
