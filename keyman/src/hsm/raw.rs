//! The one audited `unsafe` module of the project: PKCS#11 calls that the `cryptoki` crate does not offer.
//!
//! `cryptoki` has no mechanism value for `CKM_DES3_ECB_ENCRYPT_DATA` / `CKM_AES_ECB_ENCRYPT_DATA`, which the
//! per-card key schemes (`emv`, `visa2`) need: the card key is the master's ECB encryption of the derivation
//! data, made inside the token with `C_DeriveKey`. This module calls `C_DeriveKey` through `cryptoki-sys` on
//! the same library (the dynamic loader hands back the already loaded and initialised module) and the same
//! session handle that `cryptoki` opened.
//!
//! Audit notes, one per `unsafe` block:
//! * loading the library runs its initialisers; it is the PKCS#11 module the operator named, already loaded
//!   and initialised by `cryptoki` in this process, so no new code runs;
//! * `C_DeriveKey` receives pointers to a mechanism, a parameter struct, a data buffer and a template array
//!   that all live on this function's stack frame (or in borrowed slices) until the call returns; lengths
//!   are the true lengths of those buffers; the output handle is a plain integer the callee writes.
#![allow(unsafe_code)]

use crate::error::Error;
use cryptoki::object::Attribute;
use cryptoki_sys::{
    CK_ATTRIBUTE, CK_KEY_DERIVATION_STRING_DATA, CK_MECHANISM, CK_MECHANISM_TYPE, CK_OBJECT_HANDLE,
    CK_SESSION_HANDLE, CK_ULONG,
};
use std::path::Path;

/// `CKM_DES3_ECB_ENCRYPT_DATA` from PKCS#11 2.40.
pub(crate) const CKM_DES3_ECB_ENCRYPT_DATA: CK_MECHANISM_TYPE =
    cryptoki_sys::CKM_DES3_ECB_ENCRYPT_DATA;
/// `CKM_AES_ECB_ENCRYPT_DATA` from PKCS#11 2.40.
pub(crate) const CKM_AES_ECB_ENCRYPT_DATA: CK_MECHANISM_TYPE =
    cryptoki_sys::CKM_AES_ECB_ENCRYPT_DATA;

/// A second view of an already loaded PKCS#11 module, for the calls `cryptoki` lacks.
pub(crate) struct RawModule {
    lib: cryptoki_sys::Pkcs11,
}

impl RawModule {
    /// Opens the module at `path`, which `cryptoki` must already have loaded and initialised.
    pub(crate) fn load(path: &Path) -> Result<Self, Error> {
        // SAFETY: see the module notes; the library is the operator's PKCS#11 module, already loaded.
        let lib = unsafe { cryptoki_sys::Pkcs11::new(path) }.map_err(|e| Error::Module {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(RawModule { lib })
    }

    /// `C_DeriveKey` with an `*_ECB_ENCRYPT_DATA` mechanism: the new key's value is the base key's ECB
    /// encryption of `data`, computed inside the token.
    pub(crate) fn derive_encrypt_data(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        base_key: CK_OBJECT_HANDLE,
        data: &[u8],
        template: &[Attribute],
    ) -> Result<CK_OBJECT_HANDLE, Error> {
        let derive = self
            .lib
            .C_DeriveKey
            .as_ref()
            .map_err(|_| Error::Unsupported("the module has no C_DeriveKey".into()))?;
        let mut data_copy = data.to_vec();
        let mut params = CK_KEY_DERIVATION_STRING_DATA {
            pData: data_copy.as_mut_ptr(),
            ulLen: data_copy.len() as CK_ULONG,
        };
        let mut mech = CK_MECHANISM {
            mechanism,
            pParameter: (&mut params as *mut CK_KEY_DERIVATION_STRING_DATA).cast(),
            ulParameterLen: std::mem::size_of::<CK_KEY_DERIVATION_STRING_DATA>() as CK_ULONG,
        };
        let mut attrs: Vec<CK_ATTRIBUTE> = template.iter().map(CK_ATTRIBUTE::from).collect();
        let mut handle: CK_OBJECT_HANDLE = 0;
        // SAFETY: every pointer passed refers to a live local (`mech`, `params`, `data_copy`, `attrs`,
        // `handle`) or to `template`'s attribute values, borrowed for the duration of the call.
        let rv = unsafe {
            derive(
                session,
                &mut mech,
                base_key,
                attrs.as_mut_ptr(),
                attrs.len() as CK_ULONG,
                &mut handle,
            )
        };
        zeroize::Zeroize::zeroize(&mut data_copy);
        match cryptoki::error::Rv::from(rv) {
            cryptoki::error::Rv::Ok => Ok(handle),
            cryptoki::error::Rv::Error(e) => Err(Error::Token(format!("C_DeriveKey failed: {e}"))),
        }
    }
}
