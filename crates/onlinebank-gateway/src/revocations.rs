//! Sessions ended by logout, as the gateway learns them.
//!
//! The gateway checks tokens locally, so reads keep working while auth is down. To refuse the
//! token of a session that was logged out, it asks auth every [`POLL_EVERY`] for the sessions
//! revoked since a margin ([`OVERLAP_MS`]) before its last answer, so that a revocation committed
//! late is not skipped, and keeps each until its token would have expired anyway. So a
//! logged-out token is refused for writes at once (auth no longer finds its session for the
//! step-up) and for everything else within about a poll (documented as one second). When auth
//! cannot be reached, the gateway keeps the set it has.

use crate::proxy::Upstreams;
use http::{HeaderMap, HeaderValue, Method};
use onlinebank_core::http::INTERNAL_HEADER;
use onlinebank_core::internal::{RevokedPage, RevokedQuery, RevokedSession};
use onlinebank_core::Role;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the gateway asks auth for new revocations.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// Revoked sessions kept at once; the oldest-expiring go first past it.
const MAX_REVOKED: usize = 1_000_000;

/// How far into the past every poll asks again. A revocation's time is taken before it commits,
/// so one that commits late (a slow write, or another auth replica with its own clock) can carry a
/// time older than revocations already seen; asking again for this margin still finds it.
const OVERLAP_MS: i64 = 10_000;

/// Revocations auth answers at most per call (its page size): a full page means there are more,
/// asked for at once.
const PAGE_SIZE: usize = 1000;

/// Where the poll after `page` starts (`since`, epoch ms), and whether it should be at once (the
/// page was full). A page that was not full covers everything up to auth's `now`, so the next
/// one starts a margin before it, not at the newest revocation seen.
fn next_poll(page: &RevokedPage, since: i64) -> (i64, bool) {
    let newest = page.items.iter().map(|item| item.revoked_at).max();
    match newest {
        // A full page of one millisecond cannot advance by its times; skip past it.
        Some(newest) if page.items.len() >= PAGE_SIZE => (newest.max(since + 1), true),
        _ => (page.now.saturating_sub(OVERLAP_MS), false),
    }
}

/// The revoked sessions the gateway knows of, by session id, with their tokens' expiry.
#[derive(Debug, Default)]
pub struct Revocations {
    sessions: RwLock<HashMap<String, i64>>,
}

impl Revocations {
    /// Whether the session `sid` was logged out.
    pub fn is_revoked(&self, sid: &str) -> bool {
        self.sessions
            .read()
            .map(|sessions| sessions.contains_key(sid))
            .unwrap_or(false)
    }

    fn add(&self, page: Vec<RevokedSession>, now_ms: i64) {
        let Ok(mut sessions) = self.sessions.write() else {
            return;
        };
        sessions.retain(|_, expires_at| *expires_at > now_ms);
        for session in page {
            sessions.insert(session.session_id, session.expires_at);
        }
        if sessions.len() > MAX_REVOKED {
            let mut expiries: Vec<i64> = sessions.values().copied().collect();
            expiries.sort_unstable();
            let cutoff = expiries[sessions.len() - MAX_REVOKED];
            sessions.retain(|_, expires_at| *expires_at >= cutoff);
        }
    }

    /// Asks auth for new revocations every [`POLL_EVERY`] until `shutdown`.
    pub async fn follow(
        self: Arc<Self>,
        upstreams: Arc<Upstreams>,
        internal_token: String,
        shutdown: CancellationToken,
    ) {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&internal_token) {
            headers.insert(INTERNAL_HEADER, value);
        }
        let mut since = 0i64;
        let mut failing = false;
        loop {
            let mut more = false;
            let path = RevokedQuery { since: Some(since) }.path();
            let answer = upstreams
                .call(Role::Auth, Method::GET, &path, &headers, Default::default())
                .await;
            match answer.map(|answer| {
                (
                    answer.status,
                    serde_json::from_slice::<RevokedPage>(&answer.body),
                )
            }) {
                Ok((status, Ok(page))) if status.is_success() => {
                    if failing {
                        tracing::info!("revocations: auth answers again");
                        failing = false;
                    }
                    (since, more) = next_poll(&page, since);
                    self.add(page.items, onlinebank_core::time::now_ms());
                }
                other => {
                    if !failing {
                        let why = match other {
                            Ok((status, _)) => format!("status {status}"),
                            Err(error) => error.to_string(),
                        };
                        tracing::warn!(%why, "revocations: cannot ask auth, keeping the known set");
                        failing = true;
                    }
                }
            }
            if more {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_EVERY) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revoked(id: &str, expires_at: i64) -> RevokedSession {
        revoked_at(id, 0, expires_at)
    }

    fn revoked_at(id: &str, revoked_at: i64, expires_at: i64) -> RevokedSession {
        RevokedSession {
            session_id: id.to_owned(),
            revoked_at,
            expires_at,
        }
    }

    #[test]
    fn a_revocation_that_commits_after_a_newer_one_is_still_asked_for() {
        // Session "y" was revoked at 1_020 and seen at 1_040; session "x", revoked at 1_000,
        // committed only after that poll.
        let page = RevokedPage {
            items: vec![revoked_at("y", 1_020, 90_000)],
            now: 1_040,
        };
        let (since, more) = next_poll(&page, 0);
        assert!(!more);
        assert!(since <= 1_000, "the next poll starts at {since}, after x");
    }

    #[test]
    fn a_full_page_is_followed_at_once_from_its_newest_revocation() {
        let items = (0..PAGE_SIZE)
            .map(|n| revoked_at(&n.to_string(), 5_000 + i64::try_from(n).unwrap(), 90_000))
            .collect();
        let page = RevokedPage { items, now: 60_000 };
        let newest = 5_000 + i64::try_from(PAGE_SIZE).unwrap() - 1;
        assert_eq!(next_poll(&page, 5_000), (newest, true));
        // One millisecond holding a whole page cannot stop the poll.
        let items = (0..PAGE_SIZE)
            .map(|n| revoked_at(&n.to_string(), 7_000, 90_000))
            .collect();
        let page = RevokedPage { items, now: 60_000 };
        assert_eq!(next_poll(&page, 7_000), (7_001, true));
    }

    #[test]
    fn a_revoked_session_is_kept_until_its_token_expires() {
        let revocations = Revocations::default();
        revocations.add(vec![revoked("a", 1_000), revoked("b", 5_000)], 0);
        assert!(revocations.is_revoked("a") && revocations.is_revoked("b"));
        assert!(!revocations.is_revoked("c"));
        revocations.add(Vec::new(), 2_000);
        assert!(!revocations.is_revoked("a"), "kept past its expiry");
        assert!(revocations.is_revoked("b"));
    }
}
