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
//! - Entries expire ([`REMEMBER`]) and are bounded in number ([`CAPACITY`]): when full, the least
//!   recently used goes. They hold a session token that only auth and the gateway ever see.
//!
//! Why it is cheap under a flood: the entries are split into shards by a keyed hash of the user id,
//! each an LRU list (`hashlink::LruCache`) behind its own mutex. Looking up, remembering and
//! evicting are O(1) under one shard's lock; nothing ever scans the entries, so a full verifier
//! costs a login no more than an empty one, and logins of different ids rarely wait for each
//! other.

use hashlink::LruCache;
use onlinebank_core::secret::{hmac_sha256, verify_hmac_sha256};
use rand::RngCore;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

/// How long a passed check is remembered.
pub const REMEMBER: i64 = 10 * 60 * 1000;
/// At most this many ids are remembered at once.
pub const CAPACITY: usize = 100_000;
/// Shards of a full-size verifier; a small one (fewer than [`MIN_PER_SHARD`] entries a shard) has
/// fewer, down to one, so that its eviction order is exactly least recently used.
const SHARDS: usize = 16;
/// The fewest entries a shard is made for.
const MIN_PER_SHARD: usize = 1_024;
/// Expired entries dropped from a shard's cold end per remember, at most (O(1) housekeeping: the
/// rest go as they are looked up or pushed out).
const EXPIRED_SWEEP: usize = 4;

/// What a hit gives back.
#[derive(Debug, Clone)]
struct Entry {
    tag: [u8; 32],
    token: String,
    /// Epoch ms after which the entry is not used.
    until: i64,
}

/// One shard: user id -> entry, least recently used first. SipHash with a random key (std's
/// `RandomState`), so ids chosen by strangers cannot pile into one bucket.
type Shard = LruCache<String, Entry, RandomState>;

/// The verifiers, by user id.
pub struct LegacyVerifiers {
    /// Keys the tags; made at start, held only in memory.
    pepper: [u8; 32],
    /// The entries, split by [`Self::shard_of`].
    shards: Vec<Mutex<Shard>>,
    /// Picks a user id's shard (a random key per process).
    shard_hasher: RandomState,
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
    /// A verifier holding at most `capacity` ids (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let shards = (capacity / MIN_PER_SHARD).clamp(1, SHARDS);
        // Each shard's share rounded down: the total never exceeds `capacity`.
        let per_shard = (capacity / shards).max(1);
        let mut pepper = [0u8; 32];
        // ThreadRng: a CSPRNG (ChaCha12) seeded and periodically reseeded from the OS.
        rand::rng().fill_bytes(&mut pepper);
        Self {
            pepper,
            shards: (0..shards)
                .map(|_| Mutex::new(LruCache::with_hasher(per_shard, RandomState::new())))
                .collect(),
            shard_hasher: RandomState::new(),
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
    /// argon2id for `user_id` against the stored hash `phc` and the entry is still fresh. A
    /// fresh entry looked up counts as used (it moves to the warm end of its shard).
    pub fn token(&self, user_id: &str, phc: &str, password: &str, now: i64) -> Option<String> {
        let entry = {
            let mut shard = self.shard_of(user_id);
            let entry = shard.get(user_id).cloned()?;
            if entry.until <= now {
                shard.remove(user_id);
                return None;
            }
            entry
        };
        let message = Self::message(user_id, phc, password);
        verify_hmac_sha256(&self.pepper, &message, &entry.tag).then_some(entry.token)
    }

    /// Remembers credentials that just passed the full check, with the session token they got.
    /// When the shard is full, its least recently used entry goes.
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
        let mut shard = self.shard_of(user_id);
        for _ in 0..EXPIRED_SWEEP {
            match shard.iter().next() {
                Some((_, coldest)) if coldest.until <= now => shard.remove_lru(),
                _ => break,
            };
        }
        shard.insert(user_id.to_owned(), Entry { tag, token, until });
    }

    /// Drops what is remembered of `user_id` (it is locked out, or its check failed).
    pub fn forget(&self, user_id: &str) {
        self.shard_of(user_id).remove(user_id);
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    fn shard_of(&self, user_id: &str) -> MutexGuard<'_, Shard> {
        let hash = self.shard_hasher.hash_one(user_id);
        // The remainder is below the number of shards, so it fits a usize.
        let index = (hash % self.shards.len() as u64) as usize;
        lock(&self.shards[index])
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    fn the_number_of_entries_is_bounded_and_the_least_recently_remembered_go_first() {
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
    fn a_full_verifier_evicts_the_least_recently_used_not_the_first_to_expire() {
        let verifiers = LegacyVerifiers::with_capacity(3);
        // "a" is remembered first, so it expires first; "b" and "c" after.
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            verifiers.remember(id, "h", "p", id.into(), 10 * HOUR, i as i64);
        }
        // "a" is used again: it is the warmest now, "b" the coldest.
        assert_eq!(verifiers.token("a", "h", "p", 3).as_deref(), Some("a"));
        verifiers.remember("d", "h", "p", "d".into(), 10 * HOUR, 4);
        assert_eq!(verifiers.remembered(), 3);
        assert_eq!(
            verifiers.token("a", "h", "p", 5).as_deref(),
            Some("a"),
            "the entry used a moment ago was evicted"
        );
        assert!(
            verifiers.token("b", "h", "p", 5).is_none(),
            "the coldest entry was kept"
        );
        assert!(verifiers.token("c", "h", "p", 5).is_some());
        assert!(verifiers.token("d", "h", "p", 5).is_some());
    }

    #[test]
    fn a_full_size_verifier_is_sharded_and_never_holds_more_than_its_capacity() {
        let verifiers = LegacyVerifiers::with_capacity(20_000);
        assert!(
            verifiers.shards.len() > 1,
            "a full-size verifier has one lock"
        );
        for i in 0..25_000 {
            let id = format!("{i}@sk.com");
            verifiers.remember(&id, "h", "p", id.clone(), 10 * HOUR, i);
            if i % 1_000 == 0 {
                assert!(
                    verifiers.remembered() <= 20_000,
                    "{}",
                    verifiers.remembered()
                );
            }
        }
        assert!(
            verifiers.remembered() <= 20_000,
            "{}",
            verifiers.remembered()
        );
        // Every shard filled up to its share: the bound is reached, not just respected.
        assert!(
            verifiers.remembered() > 19_000,
            "{}",
            verifiers.remembered()
        );
        // The most recent ids are all still there.
        for i in 24_900..25_000 {
            let id = format!("{i}@sk.com");
            assert_eq!(verifiers.token(&id, "h", "p", 25_000), Some(id.clone()));
        }
    }

    #[test]
    fn expired_entries_at_the_cold_end_go_when_a_new_one_is_remembered() {
        let verifiers = LegacyVerifiers::with_capacity(3);
        verifiers.remember("old", "h", "p", "t".into(), 10 * HOUR, 0);
        verifiers.remember("warm", "h", "p", "t".into(), 10 * HOUR, REMEMBER / 2);
        verifiers.remember("new", "h", "p", "t".into(), 10 * HOUR, REMEMBER + 1);
        assert_eq!(verifiers.remembered(), 2, "an expired entry was kept");
        assert!(verifiers.token("warm", "h", "p", REMEMBER + 2).is_some());
        assert!(verifiers.token("new", "h", "p", REMEMBER + 2).is_some());
        // An expired entry looked up gives nothing and goes.
        assert!(verifiers
            .token("warm", "h", "p", REMEMBER * 3 / 2)
            .is_none());
        assert_eq!(verifiers.remembered(), 1);
    }

    #[test]
    fn two_processes_never_share_a_tag() {
        let (one, two) = (LegacyVerifiers::default(), LegacyVerifiers::default());
        assert_ne!(one.pepper, two.pepper);
    }
}
