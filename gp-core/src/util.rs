//! Small panic-free slicing helpers for parsers.

/// Splits `N` bytes off the front of `bytes` as an array reference, or `None` if too short.
pub(crate) fn take_array<const N: usize>(bytes: &[u8]) -> Option<(&[u8; N], &[u8])> {
    let (head, rest) = bytes.split_at_checked(N)?;
    Some((<&[u8; N]>::try_from(head).ok()?, rest))
}

/// The first `N` bytes of `bytes` as an array, zero-filled if `bytes` is shorter.
pub(crate) fn first_n<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (d, s) in out.iter_mut().zip(bytes) {
        *d = *s;
    }
    out
}

/// Test input from hex, spaces allowed.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn h(s: &str) -> alloc::vec::Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}
