//! One login at a time per user id, in arrival order.
//!
//! The lockout decision itself is atomic in the database (see `store::record_failure`), which is
//! what holds across several auth processes. Taking turns in the process on top of it makes a burst
//! of guesses for one id cost at most the threshold's worth of argon2 work: the attempts after the
//! lock are refused from the stored lock without hashing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Ids with a login in progress at once; past this, logins do not take turns (the database
/// still decides atomically).
const MAX_IDS: usize = 100_000;

/// The queue of each user id with a login in progress.
#[derive(Debug, Default)]
pub struct Turns {
    ids: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// A user id's turn; the next login of that id starts when it is dropped.
pub struct Turn {
    _guard: Option<OwnedMutexGuard<()>>,
}

impl Turns {
    /// Waits (FIFO) for `user_id`'s turn.
    pub async fn take(&self, user_id: &str) -> Turn {
        let queue = {
            let mut ids = self
                .ids
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if ids.len() >= MAX_IDS {
                // Only queues nobody holds or waits for are dropped.
                ids.retain(|_, queue| Arc::strong_count(queue) > 1);
            }
            if !ids.contains_key(user_id) && ids.len() >= MAX_IDS {
                return Turn { _guard: None };
            }
            ids.entry(user_id.to_owned()).or_default().clone()
        };
        Turn {
            _guard: Some(queue.lock_owned().await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_id_takes_turns_and_another_id_does_not_wait() {
        let turns = Arc::new(Turns::default());
        let first = turns.take("a").await;
        let waiting = tokio::spawn({
            let turns = turns.clone();
            async move {
                let _turn = turns.take("a").await;
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "a second login of the same id ran at once"
        );
        let other = tokio::time::timeout(Duration::from_secs(1), turns.take("b")).await;
        assert!(other.is_ok(), "another id waited");
        drop(first);
        assert!(tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .is_ok());
    }
}
