//! Password hashing (argon2id, at registration and login) and the per-session step-up verifier.
//!
//! Why a verifier: every deposit, withdrawal, open and close asks for the password again
//! (step-up). Checking it with argon2 each time would make the write path cost tens of
//! milliseconds of CPU per request. Instead, login (which does run argon2) derives a per-session
//! key `k = HMAC(pepper, session_id)` and stores `verifier = HMAC(k, password)` with the session.
//! A step-up recomputes the HMAC (about a microsecond) and compares in constant time.
//!
//! The password itself is never stored. The pepper is derived from the bank's secret and lives
//! only in memory, so a copy of the database alone does not allow guessing passwords offline
//! against the verifiers; the verifier dies with its session.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use onlinebank_core::secret::{hmac_sha256, verify_hmac_sha256, DerivedKey};
use std::sync::OnceLock;

/// Hashes a password with argon2id and a random salt (PHC string). CPU-heavy: call off the
/// async runtime.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| anyhow::anyhow!("hashing password: {error}"))
}

/// Checks a password against a PHC string. CPU-heavy: call off the async runtime.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the same work as a real check, for logins of unknown users (no timing oracle).
pub fn verify_against_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash_password("onlinebank-dummy").unwrap_or_default());
    let _ = verify_password(password, phc);
}

/// Computes and checks session-bound step-up verifiers.
#[derive(Clone, Debug)]
pub struct StepUpKeys {
    pepper: DerivedKey,
}

impl StepUpKeys {
    pub fn new(pepper: DerivedKey) -> Self {
        Self { pepper }
    }

    fn session_key(&self, session_id: &str) -> [u8; 32] {
        hmac_sha256(&self.pepper.0, session_id.as_bytes())
    }

    pub fn verifier(&self, session_id: &str, password: &str) -> Vec<u8> {
        hmac_sha256(&self.session_key(session_id), password.as_bytes()).to_vec()
    }

    pub fn check(&self, session_id: &str, password: &str, verifier: &[u8]) -> bool {
        verify_hmac_sha256(&self.session_key(session_id), password.as_bytes(), verifier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onlinebank_core::secret::MasterSecret;

    #[test]
    fn argon2_hash_is_argon2id_and_verifies() {
        let phc = hash_password("1234").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains("1234"));
        assert!(verify_password("1234", &phc));
        assert!(!verify_password("12345", &phc));
        assert!(!verify_password("1234", "not a hash"));
    }

    #[test]
    fn verifier_is_bound_to_the_session() {
        let keys = StepUpKeys::new(MasterSecret::from_bytes(vec![3; 32]).unwrap().derive("p"));
        let verifier = keys.verifier("session-a", "1234");
        assert!(keys.check("session-a", "1234", &verifier));
        assert!(!keys.check("session-a", "1235", &verifier));
        assert!(!keys.check("session-b", "1234", &verifier));
    }
}
