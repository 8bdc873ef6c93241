//! Password hashing (argon2id, at registration and login) and the per-session step-up verifier.
//!
//! Why a verifier: every deposit, withdrawal, open and close asks for the password again
//! (step-up). Checking it with argon2 each time would make the write path cost tens of
//! milliseconds of CPU per request. Instead, login (which does run argon2) derives a per-session
//! key `k = HMAC(pepper, session_id)` and stores `verifier = pepper_id ‖ HMAC(k, password)` with
//! the session. A step-up recomputes the HMAC (about a microsecond) and compares in constant time.
//!
//! The password itself is never stored. What keeps the verifiers from being guessed against
//! offline is the pepper, which nothing in the data directory holds:
//! - With the secret in the data directory (`secret.key`, the default), the pepper is 32 random
//!   bytes made at process start and held only in memory ([`StepUpKeys::per_process`]): a copy of
//!   the whole data directory (`auth.db`, `secret.key`) leaves the verifiers as hard to guess
//!   against as the argon2id hashes beside them.
//! - With `--token-secret` (kept outside the data directory, e.g. a Kubernetes Secret shared by
//!   several auth replicas that must check each other's sessions), the pepper is derived from it
//!   ([`StepUpKeys::derived`]).
//!
//! A session whose verifier was made under another pepper (before a restart, or by another auth
//! process on the same data directory) is recognised by its `pepper_id` (an HMAC of the pepper,
//! which tells nothing of it) and checked with argon2id against the stored hash instead; the
//! caller then writes a fresh verifier under this process's pepper. See [`StepUpCheck`].

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use onlinebank_core::secret::{hmac_sha256, verify_hmac_sha256, DerivedKey};
use rand::RngCore;
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

/// Length of the pepper's id at the head of a verifier.
const PEPPER_ID_LEN: usize = 16;

/// What a step-up password is, as far as the session's verifier can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepUpCheck {
    /// The password the session logged in with.
    Matches,
    /// Not that password.
    Wrong,
    /// The verifier was made under another pepper (another process, or one from before a
    /// restart, or an older format): only argon2id against the stored hash can tell.
    OtherPepper,
}

/// Computes and checks session-bound step-up verifiers.
#[derive(Clone)]
pub struct StepUpKeys {
    /// Keys the per-session keys.
    pepper: [u8; 32],
    /// Names the pepper in each verifier it made (an HMAC of it: public, tells nothing of it).
    pepper_id: [u8; PEPPER_ID_LEN],
}

impl std::fmt::Debug for StepUpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepUpKeys").finish_non_exhaustive()
    }
}

impl StepUpKeys {
    /// Keys derived from a secret kept outside the data directory (`--token-secret`): every
    /// process given that secret checks every other's sessions.
    pub fn derived(pepper: DerivedKey) -> Self {
        Self::from_pepper(pepper.0)
    }

    /// Keys made at start and held only in this process's memory: sessions opened elsewhere or
    /// before a restart are checked with argon2id once, then under these keys.
    pub fn per_process() -> Self {
        let mut pepper = [0u8; 32];
        // ThreadRng: a CSPRNG (ChaCha12) seeded and periodically reseeded from the OS.
        rand::rng().fill_bytes(&mut pepper);
        Self::from_pepper(pepper)
    }

    fn from_pepper(pepper: [u8; 32]) -> Self {
        let id = hmac_sha256(&pepper, b"onlinebank step-up pepper id");
        let mut pepper_id = [0u8; PEPPER_ID_LEN];
        pepper_id.copy_from_slice(&id[..PEPPER_ID_LEN]);
        Self { pepper, pepper_id }
    }

    fn session_key(&self, session_id: &str) -> [u8; 32] {
        hmac_sha256(&self.pepper, session_id.as_bytes())
    }

    /// `pepper_id ‖ HMAC(HMAC(pepper, session_id), password)`, to store with the session.
    pub fn verifier(&self, session_id: &str, password: &str) -> Vec<u8> {
        let mut verifier = self.pepper_id.to_vec();
        verifier.extend_from_slice(&hmac_sha256(
            &self.session_key(session_id),
            password.as_bytes(),
        ));
        verifier
    }

    /// Checks a step-up password against the session's stored verifier, in constant time.
    pub fn check(&self, session_id: &str, password: &str, verifier: &[u8]) -> StepUpCheck {
        let Some((pepper_id, tag)) = verifier.split_at_checked(PEPPER_ID_LEN) else {
            return StepUpCheck::OtherPepper;
        };
        if pepper_id != self.pepper_id || tag.len() != 32 {
            return StepUpCheck::OtherPepper;
        }
        if verify_hmac_sha256(&self.session_key(session_id), password.as_bytes(), tag) {
            StepUpCheck::Matches
        } else {
            StepUpCheck::Wrong
        }
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
        let keys = StepUpKeys::derived(MasterSecret::from_bytes(vec![3; 32]).unwrap().derive("p"));
        let verifier = keys.verifier("session-a", "1234");
        assert_eq!(
            keys.check("session-a", "1234", &verifier),
            StepUpCheck::Matches
        );
        assert_eq!(
            keys.check("session-a", "1235", &verifier),
            StepUpCheck::Wrong
        );
        assert_eq!(
            keys.check("session-b", "1234", &verifier),
            StepUpCheck::Wrong
        );
    }

    #[test]
    fn keys_derived_from_one_secret_check_each_others_verifiers() {
        let secret = MasterSecret::from_bytes(vec![3; 32]).unwrap();
        let (one, two) = (
            StepUpKeys::derived(secret.derive("p")),
            StepUpKeys::derived(secret.derive("p")),
        );
        let verifier = one.verifier("s", "1234");
        assert_eq!(two.check("s", "1234", &verifier), StepUpCheck::Matches);
        assert_eq!(two.check("s", "4321", &verifier), StepUpCheck::Wrong);
    }

    #[test]
    fn another_processs_verifier_is_recognised_and_tells_nothing_of_the_password() {
        let (one, two) = (StepUpKeys::per_process(), StepUpKeys::per_process());
        assert_ne!(one.pepper, two.pepper);
        let verifier = one.verifier("s", "1234");
        // Right or wrong, the other process cannot tell: argon2id decides.
        assert_eq!(two.check("s", "1234", &verifier), StepUpCheck::OtherPepper);
        assert_eq!(two.check("s", "4321", &verifier), StepUpCheck::OtherPepper);
        // A verifier of the earlier format (a bare 32-byte HMAC) is another pepper's too.
        let bare = hmac_sha256(&one.session_key("s"), b"1234");
        assert_eq!(one.check("s", "1234", &bare), StepUpCheck::OtherPepper);
        assert_eq!(one.check("s", "1234", &[]), StepUpCheck::OtherPepper);
    }
}
