//! Public keys as the rest of the world reads them: DER `SubjectPublicKeyInfo` (RFC 5280) in a PEM block
//! (RFC 7468), the form OpenSSL, card-management tools and auditors accept.
//!
//! Why written here instead of a crate: two fixed structures (RSA and P-256) with a handful of DER
//! elements; the output is checked against OpenSSL and OpenSC's `pkcs11-tool` in the tests.

/// DER of `rsaEncryption` (1.2.840.113549.1.1.1) with its NULL parameters.
const RSA_ALGORITHM: [u8; 15] = [
    0x30, 0x0D, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// DER of `id-ecPublicKey` (1.2.840.10045.2.1) with the named curve `prime256v1` (1.2.840.10045.3.1.7).
const EC_P256_ALGORITHM: [u8; 21] = [
    0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86, 0x48,
    0xCE, 0x3D, 0x03, 0x01, 0x07,
];

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let rest = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | rest.len() as u8);
        out.extend_from_slice(rest);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    der_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// A positive DER INTEGER from big-endian magnitude bytes.
fn der_uint(magnitude: &[u8]) -> Vec<u8> {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let trimmed = magnitude.get(skip..).unwrap_or_default();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    der(0x02, &content)
}

fn bit_string(content: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(content.len() + 1);
    c.push(0);
    c.extend_from_slice(content);
    der(0x03, &c)
}

/// `SubjectPublicKeyInfo` of an RSA public key.
pub fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let mut key = der_uint(modulus);
    key.extend(der_uint(exponent));
    let mut body = RSA_ALGORITHM.to_vec();
    body.extend(bit_string(&der(0x30, &key)));
    der(0x30, &body)
}

/// `SubjectPublicKeyInfo` of a P-256 public key given as the uncompressed point `04 ‖ X ‖ Y`.
pub fn ec_p256_spki(point: &[u8]) -> Vec<u8> {
    let mut body = EC_P256_ALGORITHM.to_vec();
    body.extend(bit_string(point));
    der(0x30, &body)
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |i: u32| char::from(ALPHABET.get((i & 63) as usize).copied().unwrap_or(b'A'));
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
    out
}

/// A PEM block with `label` (for example `PUBLIC KEY`), base64 lines of 64 characters, ending in `\n`.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn integers_and_lengths_follow_der() {
        assert_eq!(
            der_uint(&[0x01, 0x00, 0x01]),
            vec![0x02, 0x03, 0x01, 0x00, 0x01]
        );
        assert_eq!(der_uint(&[0x00, 0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        let long = der(0x04, &[0u8; 300]);
        assert_eq!(long.get(..4).unwrap(), &[0x04, 0x82, 0x01, 0x2C]);
    }

    #[test]
    fn pem_lines_are_64_characters() {
        let p = pem("PUBLIC KEY", &[0xAB; 100]);
        let lines: Vec<&str> = p.lines().collect();
        assert_eq!(lines.first(), Some(&"-----BEGIN PUBLIC KEY-----"));
        assert_eq!(lines.get(1).map(|l| l.len()), Some(64));
        assert_eq!(lines.last(), Some(&"-----END PUBLIC KEY-----"));
        assert!(p.ends_with('\n'));
    }
}
