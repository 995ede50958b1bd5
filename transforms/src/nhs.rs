//! NHS numbers: ten digits, the tenth a Modulus 11 check digit.
//!
//! Weights 10 down to 2 apply to the first nine digits; the check digit is
//! `11 - (sum mod 11)`, where 11 becomes 0 and 10 means the number is invalid.
//! Spaces and hyphens in the common `943 476 5919` / `943-476-5919` layouts are accepted.

use std::fmt;

/// A validated NHS number (ten ASCII digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NhsNumber(String);

/// Why a string is not an NHS number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    #[error("must be 10 digits (spaces or hyphens allowed between groups), got {0} digits")]
    Length(usize),
    #[error("may contain only digits, spaces and hyphens; found {0:?}")]
    Character(char),
    #[error("fails the Modulus 11 check (check digit {found}, expected {expected})")]
    CheckDigit { found: u8, expected: u8 },
    #[error("fails the Modulus 11 check (no valid check digit exists for these nine digits)")]
    NoCheckDigit,
}

impl NhsNumber {
    /// Parses and checks an NHS number.
    pub fn parse(input: &str) -> Result<Self, NhsNumberError> {
        let mut digits = Vec::with_capacity(10);
        for c in input.trim().chars() {
            match c {
                '0'..='9' => digits.push(c as u8 - b'0'),
                ' ' | '-' => {}
                other => return Err(NhsNumberError::Character(other)),
            }
        }
        if digits.len() != 10 {
            return Err(NhsNumberError::Length(digits.len()));
        }
        let expected = check_digit(&digits[..9]).ok_or(NhsNumberError::NoCheckDigit)?;
        if digits[9] != expected {
            return Err(NhsNumberError::CheckDigit {
                found: digits[9],
                expected,
            });
        }
        Ok(Self(digits.iter().map(|d| char::from(b'0' + d)).collect()))
    }

    /// The ten digits, no separators.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The Modulus 11 check digit for nine digits, or `None` when the remainder gives 10.
pub fn check_digit(nine: &[u8]) -> Option<u8> {
    debug_assert_eq!(nine.len(), 9);
    let sum: u32 = nine
        .iter()
        .zip((2..=10).rev())
        .map(|(d, w)| u32::from(*d) * w)
        .sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        d => Some(d as u8),
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_valid_numbers() {
        for n in ["9434765919", "943 476 5919", "943-476-5919", "4010232137"] {
            assert!(NhsNumber::parse(n).is_ok(), "{n}");
        }
        assert_eq!(
            NhsNumber::parse("943 476 5919").unwrap().as_str(),
            "9434765919"
        );
    }

    #[test]
    fn wrong_check_digit_is_named() {
        assert_eq!(
            NhsNumber::parse("9434765918"),
            Err(NhsNumberError::CheckDigit {
                found: 8,
                expected: 9
            })
        );
    }

    #[test]
    fn remainder_ten_is_invalid() {
        let nine = (0..1_000_000_000u64)
            .step_by(7919)
            .map(|n| format!("{n:09}"))
            .find(|s| check_digit(&s.bytes().map(|b| b - b'0').collect::<Vec<_>>()).is_none())
            .unwrap();
        for last in 0..=9 {
            assert_eq!(
                NhsNumber::parse(&format!("{nine}{last}")),
                Err(NhsNumberError::NoCheckDigit)
            );
        }
    }

    #[test]
    fn bad_shapes() {
        assert_eq!(
            NhsNumber::parse("943476591"),
            Err(NhsNumberError::Length(9))
        );
        assert_eq!(
            NhsNumber::parse("94347659190"),
            Err(NhsNumberError::Length(11))
        );
        assert_eq!(
            NhsNumber::parse("94347659x9"),
            Err(NhsNumberError::Character('x'))
        );
        assert_eq!(NhsNumber::parse(""), Err(NhsNumberError::Length(0)));
    }

    proptest! {
        #[test]
        fn any_nine_digits_with_their_check_digit_parse(nine in proptest::collection::vec(0u8..10, 9)) {
            let s: String = nine.iter().map(|d| char::from(b'0' + d)).collect();
            match check_digit(&nine) {
                Some(c) => {
                    let n = NhsNumber::parse(&format!("{s}{c}")).unwrap();
                    prop_assert_eq!(n.as_str(), format!("{s}{c}"));
                    // Every other final digit is rejected.
                    for other in (0..10).filter(|d| *d != c) {
                        let candidate = format!("{s}{other}");
                        prop_assert!(NhsNumber::parse(&candidate).is_err());
                    }
                }
                None => {
                    let candidate = format!("{s}0");
                    prop_assert!(NhsNumber::parse(&candidate).is_err());
                }
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,20}") {
            let _ = NhsNumber::parse(&s);
        }
    }
}
