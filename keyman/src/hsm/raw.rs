//! The one audited `unsafe` module of the project: PKCS#11 calls that the `cryptoki` crate does not offer.
//!
//! `cryptoki` has no mechanism value for `CKM_DES3_ECB_ENCRYPT_DATA` / `CKM_AES_ECB_ENCRYPT_DATA`, which the
//! per-card key schemes (`emv`, `visa2`) need: the card key is the master's ECB encryption of the derivation
//! data, made inside the token with `C_DeriveKey`. This module calls `C_DeriveKey` through `cryptoki-sys` on
//! the same library (the dynamic loader hands back the already loaded and initialised module) and the same
//! session handle that `cryptoki` opened.
//!
//! Two more calls `cryptoki` lacks or gets wrong: `C_GetMechanismInfo` for mechanism numbers it has no name
//! for (the capability probe), and `C_WrapKey` keeping only the bytes the module wrote (`cryptoki` 0.12
//! returns the whole buffer its length query sized). Every call goes through the module's function list,
//! never through exported symbols: NSS softokn exports only the list.
//!
//! It also hands a module its initialisation string: modules such as NSS softokn need one at `C_Initialize`
//! (`configdir='sql:DIR' …`, as the `pReserved` member of `CK_C_INITIALIZE_ARGS`), and `cryptoki` takes that
//! pointer only through an `unsafe` constructor.
//!
//! Audit notes, one per `unsafe` block:
//! * the function list is read once through `C_GetFunctionList` and copied by value; the library stays
//!   mapped while the copy exists;
//! * the initialisation string is a NUL-terminated `CString` owned by the loaded module's record for the rest
//!   of the process, so the pointer stays valid for as long as the module might read it; the module receives
//!   exactly the `char *` that the PKCS#11 profile of such modules documents, and nothing else changes in the
//!   arguments `cryptoki` builds;
//! * loading the library runs its initialisers; it is the PKCS#11 module the operator named, already loaded
//!   and initialised by `cryptoki` in this process, so no new code runs;
//! * `C_DeriveKey` receives pointers to a mechanism, a parameter struct, a data buffer and a template array
//!   that all live on this function's stack frame (or in borrowed slices) until the call returns; lengths
//!   are the true lengths of those buffers; the output handle is a plain integer the callee writes;
//! * `C_GetMechanismInfo` writes one `CK_MECHANISM_INFO` into a live local;
//! * `C_WrapKey` is called first with a null buffer (length query), then with a buffer of exactly the
//!   length the module asked for, which it may not exceed; the mechanism's parameter is borrowed for the
//!   call. A session or object handle that is no longer valid is reported by the module, not dereferenced
//!   by this code.
#![allow(unsafe_code)]

use crate::error::Error;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::Attribute;
use cryptoki_sys::{
    CK_ATTRIBUTE, CK_FUNCTION_LIST, CK_FUNCTION_LIST_PTR, CK_KEY_DERIVATION_STRING_DATA,
    CK_MECHANISM, CK_MECHANISM_INFO, CK_MECHANISM_TYPE, CK_OBJECT_HANDLE, CK_SESSION_HANDLE,
    CK_SLOT_ID, CK_ULONG,
};
use std::ffi::CString;
use std::path::Path;
use std::ptr::NonNull;

/// `C_Initialize` with OS locking and, when given, `init` as `pReserved`. `init` must outlive the module
/// (the caller keeps it in the module's record).
pub(crate) fn initialize(
    ctx: &Pkcs11,
    init: Option<&CString>,
) -> Result<(), cryptoki::error::Error> {
    let flags = CInitializeFlags::OS_LOCKING_OK;
    let args = match init.and_then(|s| NonNull::new(s.as_ptr().cast_mut().cast())) {
        // SAFETY: see the module notes; the pointer is a live NUL-terminated string the module only reads.
        Some(ptr) => unsafe { CInitializeArgs::new_with_reserved(flags, ptr) },
        None => CInitializeArgs::new(flags),
    };
    ctx.initialize(args)
}

/// `CKM_DES3_ECB_ENCRYPT_DATA` from PKCS#11 2.40.
pub(crate) const CKM_DES3_ECB_ENCRYPT_DATA: CK_MECHANISM_TYPE =
    cryptoki_sys::CKM_DES3_ECB_ENCRYPT_DATA;
/// `CKM_AES_ECB_ENCRYPT_DATA` from PKCS#11 2.40.
pub(crate) const CKM_AES_ECB_ENCRYPT_DATA: CK_MECHANISM_TYPE =
    cryptoki_sys::CKM_AES_ECB_ENCRYPT_DATA;

/// A second view of an already loaded PKCS#11 module, for the calls `cryptoki` lacks.
///
/// Calls go through the module's function list (`C_GetFunctionList`), never through exported symbols:
/// modules such as NSS softokn export nothing but the list.
pub(crate) struct RawModule {
    /// Keeps the library mapped for as long as the copied function pointers may be called.
    _lib: cryptoki_sys::Pkcs11,
    list: CK_FUNCTION_LIST,
}

/// What `C_GetMechanismInfo` says about one mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawMechanismInfo {
    /// `CKF_*` flags (encrypt, sign, wrap, derive, …).
    pub(crate) flags: CK_ULONG,
}

impl RawModule {
    /// Opens the module at `path`, which `cryptoki` must already have loaded and initialised.
    pub(crate) fn load(path: &Path) -> Result<Self, Error> {
        let module_err = |reason: String| Error::Module {
            path: path.to_path_buf(),
            reason,
        };
        // SAFETY: see the module notes; the library is the operator's PKCS#11 module, already loaded.
        let lib =
            unsafe { cryptoki_sys::Pkcs11::new(path) }.map_err(|e| module_err(e.to_string()))?;
        let get = lib
            .C_GetFunctionList
            .as_ref()
            .map_err(|e| module_err(format!("no C_GetFunctionList: {e}")))?;
        let mut list_ptr: CK_FUNCTION_LIST_PTR = std::ptr::null_mut();
        // SAFETY: `C_GetFunctionList` writes one pointer into the live local `list_ptr`.
        let rv = unsafe { get(&mut list_ptr) };
        if rv != cryptoki_sys::CKR_OK || list_ptr.is_null() {
            return Err(module_err(format!("C_GetFunctionList failed ({rv:#x})")));
        }
        // SAFETY: a successful `C_GetFunctionList` points at the module's static function list, which
        // lives as long as the library is mapped (held in `_lib`); it is copied once, by value.
        let list = unsafe { *list_ptr };
        Ok(RawModule { _lib: lib, list })
    }

    /// `C_GetMechanismInfo` for any mechanism number, including those `cryptoki` has no name for.
    /// `None` when the token does not offer the mechanism.
    pub(crate) fn mechanism_info(
        &self,
        slot: CK_SLOT_ID,
        mechanism: CK_MECHANISM_TYPE,
    ) -> Result<Option<RawMechanismInfo>, Error> {
        let get = self
            .list
            .C_GetMechanismInfo
            .ok_or_else(|| Error::Unsupported("the module has no C_GetMechanismInfo".into()))?;
        let mut info = CK_MECHANISM_INFO {
            ulMinKeySize: 0,
            ulMaxKeySize: 0,
            flags: 0,
        };
        // SAFETY: the callee writes one `CK_MECHANISM_INFO` into the live local `info`.
        let rv = unsafe { get(slot, mechanism, &mut info) };
        match cryptoki::error::Rv::from(rv) {
            cryptoki::error::Rv::Ok => Ok(Some(RawMechanismInfo { flags: info.flags })),
            cryptoki::error::Rv::Error(cryptoki::error::RvError::MechanismInvalid) => Ok(None),
            cryptoki::error::Rv::Error(e) => {
                Err(Error::Token(format!("C_GetMechanismInfo failed: {e}")))
            }
        }
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
        let mut data_copy = data.to_vec();
        let mut params = CK_KEY_DERIVATION_STRING_DATA {
            pData: data_copy.as_mut_ptr(),
            ulLen: data_copy.len() as CK_ULONG,
        };
        let out = self.derive(
            session,
            mechanism,
            (&mut params as *mut CK_KEY_DERIVATION_STRING_DATA).cast(),
            std::mem::size_of::<CK_KEY_DERIVATION_STRING_DATA>(),
            base_key,
            template,
        );
        zeroize::Zeroize::zeroize(&mut data_copy);
        out
    }

    /// `C_WrapKey`, keeping only the bytes the module says it wrote. `cryptoki` 0.12 returns the whole
    /// buffer sized by the length query, which a module may over-estimate (NSS softokn answers 32 for an
    /// RFC 3394 wrap of a 16-byte key and then writes 24), so its result would carry stray zero bytes.
    pub(crate) fn wrap_key(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: &cryptoki::mechanism::Mechanism<'_>,
        wrapping_key: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
    ) -> Result<Vec<u8>, cryptoki::error::Error> {
        use cryptoki::context::Function;
        let wrap = self
            .list
            .C_WrapKey
            .ok_or(cryptoki::error::Error::NullFunctionPointer)?;
        let mut mech = CK_MECHANISM::from(mechanism);
        let mut len: CK_ULONG = 0;
        // SAFETY: a length query: the output pointer is null, `mech` and `len` are live locals, and the
        // mechanism's parameter (if any) lives in `mechanism`, borrowed for the call.
        let rv = unsafe {
            wrap(
                session,
                &mut mech,
                wrapping_key,
                key,
                std::ptr::null_mut(),
                &mut len,
            )
        };
        cryptoki::error::Rv::from(rv).into_result(Function::WrapKey)?;
        let mut out = vec![0u8; usize::try_from(len).unwrap_or(0)];
        // SAFETY: `out` has exactly `len` bytes, as the callee was told; it writes at most that many and
        // sets `len` to the number written.
        let rv = unsafe {
            wrap(
                session,
                &mut mech,
                wrapping_key,
                key,
                out.as_mut_ptr(),
                &mut len,
            )
        };
        cryptoki::error::Rv::from(rv).into_result(Function::WrapKey)?;
        out.truncate(usize::try_from(len).unwrap_or(0));
        Ok(out)
    }

    /// The one `C_DeriveKey` call: `params` must point at a live parameter struct of `params_len` bytes.
    fn derive(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        params: *mut std::ffi::c_void,
        params_len: usize,
        base_key: CK_OBJECT_HANDLE,
        template: &[Attribute],
    ) -> Result<CK_OBJECT_HANDLE, Error> {
        let derive = self
            .list
            .C_DeriveKey
            .ok_or_else(|| Error::Unsupported("the module has no C_DeriveKey".into()))?;
        let mut mech = CK_MECHANISM {
            mechanism,
            pParameter: params,
            ulParameterLen: params_len as CK_ULONG,
        };
        let mut attrs: Vec<CK_ATTRIBUTE> = template.iter().map(CK_ATTRIBUTE::from).collect();
        let mut handle: CK_OBJECT_HANDLE = 0;
        // SAFETY: every pointer passed refers to a live local (`mech`, `attrs`, `handle`), to the caller's
        // parameter struct and data (alive until the caller's frame ends, after this call), or to
        // `template`'s attribute values, borrowed for the duration of the call.
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
        match cryptoki::error::Rv::from(rv) {
            cryptoki::error::Rv::Ok => Ok(handle),
            cryptoki::error::Rv::Error(e) => Err(Error::Token(format!("C_DeriveKey failed: {e}"))),
        }
    }
}
