//! ODS organisation codes: GP practices (`A81001`), trusts (`RX1`), sites (`RX1AB`),
//! commissioners (`06N`), and the unknown-GP code `V81999`.
//!
//! The shape accepted is 3 to 10 ASCII letters and digits, stored upper case. The directory,
//! not this type, decides whether a code is known.

use std::fmt;

/// The ODS code used when a patient's GP is not known.
pub const UNKNOWN_GP: &str = "V81999";

/// A well-formed ODS organisation code (upper case).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct OdsCode(String);

/// Why a string is not an ODS code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OdsCodeError {
    #[error("is empty")]
    Empty,
    #[error("must be 3 to 10 letters and digits, got {0} characters")]
    Length(usize),
    #[error("may contain only letters and digits; found {0:?}")]
    Character(char),
}

impl OdsCode {
    /// Parses an ODS code, trimming spaces and upper-casing it.
    pub fn parse(input: &str) -> Result<Self, OdsCodeError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(OdsCodeError::Empty);
        }
        if let Some(c) = s.chars().find(|c| !c.is_ascii_alphanumeric()) {
            return Err(OdsCodeError::Character(c));
        }
        if !(3..=10).contains(&s.len()) {
            return Err(OdsCodeError::Length(s.len()));
        }
        Ok(Self(s.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OdsCode {
    type Error = OdsCodeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<OdsCode> for String {
    fn from(c: OdsCode) -> Self {
        c.0
    }
}

impl fmt::Display for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shapes() {
        assert_eq!(OdsCode::parse(" a81001 ").unwrap().as_str(), "A81001");
        assert_eq!(OdsCode::parse("RX1").unwrap().as_str(), "RX1");
        assert_eq!(OdsCode::parse(""), Err(OdsCodeError::Empty));
        assert_eq!(OdsCode::parse("A8"), Err(OdsCodeError::Length(2)));
        assert_eq!(OdsCode::parse("A81-01"), Err(OdsCodeError::Character('-')));
    }

    proptest! {
        #[test]
        fn parsed_codes_are_upper_alnum(s in "\\PC{0,12}") {
            if let Ok(c) = OdsCode::parse(&s) {
                prop_assert!(c.as_str().chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
                prop_assert!((3..=10).contains(&c.as_str().len()));
                prop_assert_eq!(OdsCode::parse(c.as_str()).unwrap(), c);
            }
        }
    }
}
