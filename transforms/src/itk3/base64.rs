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
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    let sextet = |n: u32, shift: u32| ALPHABET[((n >> shift) & 63) as usize];
    let mut groups = bytes.chunks_exact(3);
    for g in &mut groups {
        let n = (u32::from(g[0]) << 16) | (u32::from(g[1]) << 8) | u32::from(g[2]);
        out.extend_from_slice(&[sextet(n, 18), sextet(n, 12), sextet(n, 6), sextet(n, 0)]);
    }
    match *groups.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[sextet(n, 18), sextet(n, 12), b'=', b'=']);
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.extend_from_slice(&[sextet(n, 18), sextet(n, 12), sextet(n, 6), b'=']);
        }
        _ => {}
    }
    // Every byte pushed comes from the ASCII alphabet or is `=`.
    String::from_utf8(out).expect("base64 is ASCII")
}

/// What each input byte means to the decoder: a sextet (0–63), or one of the markers below.
const SKIP: u8 = 0x80;
const PAD: u8 = 0x81;
const BAD: u8 = 0xFF;

const fn decode_table() -> [u8; 256] {
    let mut table = [BAD; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table[b'=' as usize] = PAD;
    // ASCII whitespace as `u8::is_ascii_whitespace` defines it.
    table[b' ' as usize] = SKIP;
    table[b'\t' as usize] = SKIP;
    table[b'\n' as usize] = SKIP;
    table[0x0C] = SKIP;
    table[b'\r' as usize] = SKIP;
    table
}

const DECODE: [u8; 256] = decode_table();

/// Where decoded bytes go: kept, or only counted.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for usize {
    fn put(&mut self, bytes: &[u8]) {
        *self += bytes.len();
    }
}

/// Decodes padded standard base64. ASCII whitespace is skipped, since XML values are often
/// wrapped; anything else outside the alphabet is an error.
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    decode_into(text, &mut out)?;
    Ok(out)
}

/// Checks what [`decode`] checks, keeping nothing; returns the decoded length.
pub fn check(text: &str) -> Result<usize, Base64Error> {
    let mut len = 0usize;
    decode_into(text, &mut len)?;
    Ok(len)
}

fn decode_into(text: &str, out: &mut impl Sink) -> Result<(), Base64Error> {
    let input = text.as_bytes();
    // Sextets gathered for the current group of four, and how many.
    let mut acc = 0u32;
    let mut held = 0usize;
    // Base64 characters (padding included) and `=` seen so far.
    let mut count = 0usize;
    let mut pads = 0usize;
    let mut misplaced = false;
    let mut i = 0;
    while i < input.len() {
        // Whole groups of four sextets at a time while the input is plain.
        if held == 0 && pads == 0 {
            while let Some(group) = input.get(i..i + 4) {
                let s = [
                    DECODE[group[0] as usize],
                    DECODE[group[1] as usize],
                    DECODE[group[2] as usize],
                    DECODE[group[3] as usize],
                ];
                if (s[0] | s[1] | s[2] | s[3]) & 0xC0 != 0 {
                    break;
                }
                let n = (u32::from(s[0]) << 18)
                    | (u32::from(s[1]) << 12)
                    | (u32::from(s[2]) << 6)
                    | u32::from(s[3]);
                out.put(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
                i += 4;
                count += 4;
            }
            if i == input.len() {
                break;
            }
        }
        let byte = input[i];
        match DECODE[byte as usize] {
            SKIP => {}
            PAD => {
                pads += 1;
                count += 1;
            }
            BAD => return Err(Base64Error::Byte { byte, offset: i }),
            sextet => {
                count += 1;
                if pads > 0 {
                    // A character after padding: the input is still checked byte by byte.
                    misplaced = true;
                } else {
                    acc = (acc << 6) | u32::from(sextet);
                    held += 1;
                    if held == 4 {
                        out.put(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
                        acc = 0;
                        held = 0;
                    }
                }
            }
        }
        i += 1;
    }
    if !count.is_multiple_of(4) {
        return Err(Base64Error::Length(count));
    }
    if misplaced || pads > 2 {
        return Err(Base64Error::Padding);
    }
    // With the length a multiple of four and padding only at the end, `held` is 4 - pads.
    match (held, pads) {
        (0, 0) => {}
        (2, 2) if acc & 0xF == 0 => out.put(&[(acc >> 4) as u8]),
        (3, 1) if acc & 0x3 == 0 => {
            out.put(&[(acc >> 10) as u8, (acc >> 2) as u8]);
        }
        _ => return Err(Base64Error::Padding),
    }
    Ok(())
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
        assert_eq!(decode("Zm9="), Err(Base64Error::Padding));
        assert_eq!(decode("===="), Err(Base64Error::Padding));
        assert_eq!(decode("Zg=\n="), Ok(b"f".to_vec()));
        assert_eq!(decode("Zm=v"), Err(Base64Error::Padding));
        assert_eq!(
            decode("Zm9v Zg==!"),
            Err(Base64Error::Byte {
                byte: b'!',
                offset: 9
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn decodes_what_encode_wrote_wrapped_anywhere(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            breaks in proptest::collection::vec((0usize..400, 0usize..4), 0..6),
        ) {
            let mut coded = encode(&bytes).into_bytes();
            for (at, kind) in breaks {
                let at = at.min(coded.len());
                coded.insert(at, [b' ', b'\n', b'\r', b'\t'][kind]);
            }
            let coded = String::from_utf8(coded).unwrap();
            proptest::prop_assert_eq!(decode(&coded), Ok(bytes));
        }

        #[test]
        fn never_panics_and_only_decodes_base64(text in "[A-Za-z0-9+/= \n!]{0,40}") {
            proptest::prop_assert_eq!(check(&text), decode(&text).map(|b| b.len()));
            if let Ok(bytes) = decode(&text) {
                let plain: String = text.split_ascii_whitespace().collect();
                proptest::prop_assert_eq!(encode(&bytes), plain);
            }
        }
    }
}
