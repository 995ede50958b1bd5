//! Standard base64 (RFC 4648 §4, with `=` padding), as FHIR `base64Binary` uses.

use thiserror::Error;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Why a base64 value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Base64Error {
    /// A byte outside the base64 alphabet, at this offset.
    #[error("byte {byte:#04x} at offset {offset} is not base64")]
    Byte {
        /// The offending byte.
        byte: u8,
        /// Its offset in the input.
        offset: usize,
    },
    /// The number of base64 characters is not a multiple of four.
    #[error("length {0} is not a multiple of four")]
    Length(usize),
    /// `=` padding somewhere other than the last one or two places, or non-zero trailing bits.
    #[error("bad padding")]
    Padding,
}

/// Encodes bytes as padded standard base64.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes padded standard base64. ASCII whitespace is skipped, since XML values are often
/// wrapped; anything else outside the alphabet is an error.
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    let mut clean = Vec::with_capacity(text.len());
    for (offset, &byte) in text.as_bytes().iter().enumerate() {
        if byte.is_ascii_whitespace() {
            continue;
        }
        if byte != b'=' && sextet(byte).is_none() {
            return Err(Base64Error::Byte { byte, offset });
        }
        clean.push(byte);
    }
    if clean.len() % 4 != 0 {
        return Err(Base64Error::Length(clean.len()));
    }
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    let quads = clean.len() / 4;
    for (q, quad) in clean.chunks(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && q + 1 != quads) || quad[..4 - pad].contains(&b'=') {
            return Err(Base64Error::Padding);
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | u32::from(sextet(c).ok_or(Base64Error::Padding)?);
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        if bytes[3 - pad..].iter().any(|&b| b != 0) {
            return Err(Base64Error::Padding);
        }
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in cases {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn all_bytes_round_trip() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for len in [0, 1, 2, 3, 4, 255, 256, 257, 1000] {
            assert_eq!(decode(&encode(&bytes[..len])).unwrap(), &bytes[..len]);
        }
    }

    #[test]
    fn whitespace_is_skipped_and_junk_rejected() {
        assert_eq!(decode("Zm9v\n YmFy\r\n").unwrap(), b"foobar");
        assert_eq!(
            decode("Zm9v!"),
            Err(Base64Error::Byte {
                byte: b'!',
                offset: 4
            })
        );
        assert_eq!(decode("Zm9"), Err(Base64Error::Length(3)));
        assert_eq!(decode("Zg==Zg=="), Err(Base64Error::Padding));
        assert_eq!(decode("Z==="), Err(Base64Error::Padding));
        assert_eq!(decode("Zh=="), Err(Base64Error::Padding));
    }
}
