//! One login at a time per user id, in arrival order.
//!
//! The lockout decision itself ([`crate::lockout::decide`]) is made in the write that records the
//! attempt, atomically in the database (see `store::record_failure`), which is what holds across
//! several auth processes. Taking turns in the process on top of it makes a burst
//! of guesses for one id cost at most the threshold's worth of argon2 work: the attempts after the
//! lock are refused from the stored lock without hashing.
//!
//! An id's queue lives only while a login of it is in progress or waiting: the last turn to end
//! removes it, so the map holds at most the logins in flight (themselves bounded by the gateway's
//! public places), never every id ever tried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Ids with a login in progress at once; past this, logins of new ids do not take turns (the
/// database still decides atomically).
const MAX_IDS: usize = 100_000;

/// One id's queue, and how many logins hold or wait for it (the entry goes at zero).
#[derive(Debug)]
struct Queue {
    lock: Arc<AsyncMutex<()>>,
    users: usize,
}

type Queues = Arc<Mutex<HashMap<String, Queue>>>;

/// The queue of each user id with a login in progress.
#[derive(Debug, Default)]
pub struct Turns {
    ids: Queues,
}

/// A user id's turn; the next login of that id starts when it is dropped.
pub struct Turn {
    /// Set while the turn is held; `None` when the map was full.
    _held: Option<Held>,
}

/// A login's place in an id's queue: waiting, or holding the turn once `guard` is set. Dropping
/// it (the turn ends, or the client gave up while waiting) leaves the queue, and the last one to
/// leave removes the id.
struct Held {
    ids: Queues,
    user_id: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Turns {
    /// Waits (FIFO) for `user_id`'s turn.
    pub async fn take(&self, user_id: &str) -> Turn {
        let lock = {
            let mut ids = lock(&self.ids);
            if !ids.contains_key(user_id) && ids.len() >= MAX_IDS {
                return Turn { _held: None };
            }
            let queue = ids.entry(user_id.to_owned()).or_insert_with(|| Queue {
                lock: Arc::default(),
                users: 0,
            });
            queue.users += 1;
            queue.lock.clone()
        };
        let mut held = Held {
            ids: self.ids.clone(),
            user_id: user_id.to_owned(),
            guard: None,
        };
        held.guard = Some(lock.lock_owned().await);
        Turn { _held: Some(held) }
    }

    /// Ids with a queue, for tests.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.ids).len()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut ids = lock(&self.ids);
        if let Some(queue) = ids.get_mut(&self.user_id) {
            queue.users = queue.users.saturating_sub(1);
            if queue.users == 0 {
                ids.remove(&self.user_id);
            }
        }
    }
}

fn lock(ids: &Queues) -> std::sync::MutexGuard<'_, HashMap<String, Queue>> {
    ids.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
        drop(other);
        drop(first);
        assert!(tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .is_ok());
        assert_eq!(turns.len(), 0, "queues of ids nobody uses were kept");
    }

    #[tokio::test]
    async fn an_id_keeps_its_queue_while_someone_waits_and_loses_it_after() {
        let turns = Arc::new(Turns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = turns.take("a").await;
        let waiting = tokio::spawn({
            let (turns, order) = (turns.clone(), order.clone());
            async move {
                let _turn = turns.take("a").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                order.lock().unwrap().push("second");
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert_eq!(turns.len(), 1, "the queue went while a login waited in it");
        // A login arriving now still queues behind the waiting one.
        let third = tokio::time::timeout(Duration::from_secs(1), turns.take("a")).await;
        assert!(third.is_ok());
        order.lock().unwrap().push("third");
        assert_eq!(*order.lock().unwrap(), ["second", "third"]);
        drop(third);
        assert!(waiting.await.is_ok());
        assert_eq!(turns.len(), 0);
    }

    #[tokio::test]
    async fn a_login_given_up_while_waiting_releases_the_queue() {
        let turns = Arc::new(Turns::default());
        let first = turns.take("a").await;
        let gave_up = tokio::time::timeout(Duration::from_millis(20), turns.take("a")).await;
        assert!(gave_up.is_err());
        drop(first);
        assert_eq!(turns.len(), 0);
    }
}
