//! Sessions ended by logout, as the gateway learns them.
//!
//! The gateway checks tokens locally, so reads keep working while auth is down. To refuse the
//! token of a session that was logged out, it asks auth every [`POLL_EVERY`] for the sessions
//! revoked since its last answer and keeps each until its token would have expired anyway. So a
//! logged-out token is refused for writes at once (auth no longer finds its session for the
//! step-up) and for everything else within about a poll (documented as one second). When auth
//! cannot be reached, the gateway keeps the set it has.

use crate::proxy::Upstreams;
use http::{HeaderMap, HeaderValue, Method};
use onlinebank_core::http::INTERNAL_HEADER;
use onlinebank_core::Role;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the gateway asks auth for new revocations.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// Revoked sessions kept at once; the oldest-expiring go first past it.
const MAX_REVOKED: usize = 1_000_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevokedSession {
    session_id: String,
    revoked_at: i64,
    expires_at: i64,
}

#[derive(Deserialize)]
struct RevokedPage {
    items: Vec<RevokedSession>,
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
            let path = format!("/internal/v1/sessions/revoked?since={since}");
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
                    if let Some(newest) = page.items.iter().map(|item| item.revoked_at).max() {
                        since = since.max(newest);
                    }
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
        RevokedSession {
            session_id: id.to_owned(),
            revoked_at: 0,
            expires_at,
        }
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
