//! SMTP account passwords: stored as Argon2id PHC strings (`$argon2id$v=19$m=...`), made by
//! `edthub hash-password`. The unsalted SHA-256 form of earlier versions (`password_sha256`)
//! is still accepted for one release, with a warning at start-up.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// A password as the config stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored<'a> {
    /// An Argon2id PHC string.
    Argon2(&'a str),
    /// Hex SHA-256 of the password (deprecated).
    Sha256(&'a str),
}

/// A fresh Argon2id PHC string for `password` (a random 16-byte salt; the argon2 crate's
/// default cost, OWASP's minimum: 19 MiB, 2 passes).
pub fn hash(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut salt)
        .map_err(|_| anyhow::anyhow!("no random numbers for a salt"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
        .to_string())
}

/// `edthub hash-password`: reads the password from stdin (one line; its line ending is not
/// part of it), so it stays out of the shell history and the process list, and prints the
/// PHC string.
pub fn hash_password_command() -> anyhow::Result<std::process::ExitCode> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Password (it will be shown as you type; end with Enter):");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    anyhow::ensure!(
        !password.is_empty(),
        "no password on stdin: printf %s \"$PASSWORD\" | edthub hash-password"
    );
    println!("{}", hash(password)?);
    Ok(std::process::ExitCode::SUCCESS)
}

/// Why a stored PHC string cannot be used (for config validation).
pub fn check_phc(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC string: {e}"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "the algorithm is {}, not argon2id",
            parsed.algorithm.as_str()
        ));
    }
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err("it has no salt or no hash".into());
    }
    Ok(())
}

/// Whether `password` is the one stored. Slow on purpose (Argon2): call it off the runtime's
/// worker threads.
pub fn verify(stored: Stored<'_>, password: &str) -> bool {
    match stored {
        Stored::Argon2(phc) => PasswordHash::new(phc)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false),
        Stored::Sha256(hex) => hex_eq(&edt_transforms::sha256_hex(password.as_bytes()), hex),
    }
}

/// Spends the time a real check would, so an unknown user name answers no faster than a
/// wrong password.
pub fn verify_nobody(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash("no such user").unwrap_or_default());
    let _ = verify(Stored::Argon2(phc), password);
}

/// Compares secrets (or their digests) in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// Hex digests compared in constant time, whatever their case.
fn hex_eq(a: &str, b: &str) -> bool {
    constant_time_eq(
        a.to_ascii_lowercase().as_bytes(),
        b.to_ascii_lowercase().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_phc_strings_with_their_own_salt() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert_eq!(check_phc(&a), Ok(()));
        assert!(verify(Stored::Argon2(&a), "correct horse"));
        assert!(!verify(Stored::Argon2(&a), "correct horse "));
        assert!(!verify(Stored::Argon2("$argon2id$garbage"), "x"));
        assert!(
            check_phc("5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8").is_err()
        );
        let argon2i = a.replacen("$argon2id$", "$argon2i$", 1);
        assert!(check_phc(&argon2i).unwrap_err().contains("not argon2id"));
    }

    #[test]
    fn an_account_has_exactly_one_password_form() {
        let user = |hash: Option<&str>, sha: Option<&str>| crate::config::SmtpUser {
            username: "u".into(),
            password_hash: hash.map(str::to_string),
            password_sha256: sha.map(str::to_string),
            sender_ods: "RX1".into(),
        };
        let phc = hash("pw").unwrap();
        let hex = edt_transforms::sha256_hex(b"pw");
        assert_eq!(user(Some(&phc), None).password(), Ok(Stored::Argon2(&phc)));
        assert_eq!(user(None, Some(&hex)).password(), Ok(Stored::Sha256(&hex)));
        assert!(user(Some(&phc), Some(&hex)).password().is_err());
        assert!(user(None, None).password().is_err());
        let e = user(Some(&hex), None).password().unwrap_err();
        assert!(
            e.contains("password_hash") && e.contains("hash-password"),
            "{e}"
        );
        assert!(user(None, Some("abc")).password().is_err());
    }

    #[test]
    fn the_old_sha256_form_still_verifies() {
        let hex = edt_transforms::sha256_hex(b"password").to_ascii_uppercase();
        assert!(verify(Stored::Sha256(&hex), "password"));
        assert!(!verify(Stored::Sha256(&hex), "Password"));
    }
}
