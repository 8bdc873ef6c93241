//! Credentials in every request (the original system's `POST /requests` body, HTTP Basic on its
//! reads) without an argon2id hash per request: a short-lived, in-memory verifier of the last
//! credentials that passed argon2id, per user id.
//!
//! After a legacy login passes the full check (argon2id, lockout, a new session), auth keeps
//! `tag = HMAC-SHA256(pepper, user_id ‖ stored PHC hash ‖ password)` with that session's token,
//! for at most [`REMEMBER`] (and never past the session's own expiry less a minute). The next
//! legacy login of the same id recomputes the tag (about a microsecond) and compares it in
//! constant time; on a match it answers the same token: no argon2id, no session row, no write.
//! Everything else takes the full path, exactly as before: a wrong password (no match) is
//! checked with argon2id and counted towards the lockout; an unknown id never has an entry.
//!
//! What keeps it safe (docs/architecture.md has the argument in full):
//! - The pepper is 32 random bytes made at start and held only in this process's memory: a copy
//!   of the database or of the disk holds no tag and nothing to test guesses against.
//! - The stored PHC hash is part of the tag, and is read (with the lockout) on every hit: a
//!   changed password no longer matches, a locked id is answered `locked_out` (and its entry
//!   dropped), on every replica at once, whatever this cache holds.
//! - Entries expire ([`REMEMBER`]), are bounded in number ([`CAPACITY`]; the oldest go first), and
//!   hold a session token that only auth and the gateway ever see.

use onlinebank_core::secret::{hmac_sha256, verify_hmac_sha256};
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Mutex;

/// How long a passed check is remembered.
pub const REMEMBER: i64 = 10 * 60 * 1000;
/// At most this many ids are remembered at once.
pub const CAPACITY: usize = 100_000;

/// What a hit gives back.
#[derive(Debug, Clone)]
struct Entry {
    tag: [u8; 32],
    token: String,
    /// Epoch ms after which the entry is not used.
    until: i64,
}

/// The verifiers, by user id.
pub struct LegacyVerifiers {
    pepper: [u8; 32],
    entries: Mutex<HashMap<String, Entry>>,
    capacity: usize,
}

impl std::fmt::Debug for LegacyVerifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyVerifiers").finish_non_exhaustive()
    }
}

impl Default for LegacyVerifiers {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl LegacyVerifiers {
    pub fn with_capacity(capacity: usize) -> Self {
        let mut pepper = [0u8; 32];
        // ThreadRng: a CSPRNG (ChaCha12) seeded and periodically reseeded from the OS.
        rand::rng().fill_bytes(&mut pepper);
        Self {
            pepper,
            entries: Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    fn message(user_id: &str, phc: &str, password: &str) -> Vec<u8> {
        // Lengths first: no two (id, hash, password) triples give the same message.
        let mut message = Vec::with_capacity(16 + user_id.len() + phc.len() + password.len());
        for part in [user_id, phc, password] {
            message.extend_from_slice(&(part.len() as u64).to_be_bytes());
            message.extend_from_slice(part.as_bytes());
        }
        message
    }

    /// The remembered token for these credentials, if they match the last ones that passed
    /// argon2id for `user_id` against the stored hash `phc` and the entry is still fresh.
    pub fn token(&self, user_id: &str, phc: &str, password: &str, now: i64) -> Option<String> {
        let entry = self.lock().get(user_id).cloned()?;
        if entry.until <= now {
            return None;
        }
        let message = Self::message(user_id, phc, password);
        verify_hmac_sha256(&self.pepper, &message, &entry.tag).then_some(entry.token)
    }

    /// Remembers credentials that just passed the full check, with the session token they got.
    pub fn remember(
        &self,
        user_id: &str,
        phc: &str,
        password: &str,
        token: String,
        session_expires_at: i64,
        now: i64,
    ) {
        let until = (now + REMEMBER).min(session_expires_at - 60_000);
        if until <= now {
            return;
        }
        let tag = hmac_sha256(&self.pepper, &Self::message(user_id, phc, password));
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(user_id) {
            entries.retain(|_, entry| entry.until > now);
            while entries.len() >= self.capacity {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.until)
                    .map(|(id, _)| id.clone());
                match oldest {
                    Some(id) => entries.remove(&id),
                    None => break,
                };
            }
        }
        entries.insert(user_id.to_owned(), Entry { tag, token, until });
    }

    /// Drops what is remembered of `user_id` (it is locked out, or its check failed).
    pub fn forget(&self, user_id: &str) {
        self.lock().remove(user_id);
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn only_the_same_id_hash_and_password_get_the_token() {
        let verifiers = LegacyVerifiers::default();
        verifiers.remember(
            "1@sk.com",
            "$argon2id$a",
            "1234",
            "tok".into(),
            10 * HOUR,
            0,
        );
        assert_eq!(
            verifiers
                .token("1@sk.com", "$argon2id$a", "1234", 1)
                .as_deref(),
            Some("tok")
        );
        assert_eq!(verifiers.token("1@sk.com", "$argon2id$a", "12345", 1), None);
        assert_eq!(verifiers.token("1@sk.com", "$argon2id$a", "123", 1), None);
        // A changed password means a new stored hash: the old credentials no longer match.
        assert_eq!(verifiers.token("1@sk.com", "$argon2id$b", "1234", 1), None);
        assert_eq!(verifiers.token("2@sk.com", "$argon2id$a", "1234", 1), None);
        // Concatenation cannot be shifted between fields.
        verifiers.remember("ab", "c", "d", "t2".into(), 10 * HOUR, 0);
        assert_eq!(verifiers.token("ab", "", "cd", 1), None);
    }

    #[test]
    fn entries_expire_before_their_session_and_can_be_forgotten() {
        let verifiers = LegacyVerifiers::default();
        verifiers.remember("u", "h", "p", "t".into(), 10 * HOUR, 0);
        assert!(verifiers.token("u", "h", "p", REMEMBER - 1).is_some());
        assert!(verifiers.token("u", "h", "p", REMEMBER).is_none());
        // A session about to end is not remembered past a minute before its end.
        verifiers.remember("v", "h", "p", "t".into(), 90_000, 0);
        assert!(verifiers.token("v", "h", "p", 29_999).is_some());
        assert!(verifiers.token("v", "h", "p", 30_000).is_none());
        verifiers.remember("w", "h", "p", "t".into(), 30_000, 0);
        assert!(verifiers.token("w", "h", "p", 1).is_none());
        verifiers.forget("u");
        assert!(verifiers.token("u", "h", "p", 1).is_none());
    }

    #[test]
    fn the_number_of_entries_is_bounded_and_the_oldest_go_first() {
        let verifiers = LegacyVerifiers::with_capacity(3);
        for (i, id) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            verifiers.remember(id, "h", "p", id.into(), 10 * HOUR, i as i64);
        }
        assert_eq!(verifiers.remembered(), 3);
        assert!(verifiers.token("a", "h", "p", 10).is_none());
        assert!(verifiers.token("b", "h", "p", 10).is_none());
        assert!(verifiers.token("e", "h", "p", 10).is_some());
    }

    #[test]
    fn two_processes_never_share_a_tag() {
        let (one, two) = (LegacyVerifiers::default(), LegacyVerifiers::default());
        assert_ne!(one.pepper, two.pepper);
    }
}
