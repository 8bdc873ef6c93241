//! Handlers waiting for their request's outcome, woken by the outcome consumer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use uuid::Uuid;

#[derive(Debug, Clone, Default)]
pub struct Waiters(Arc<Mutex<HashMap<Uuid, Arc<Notify>>>>);

impl Waiters {
    /// Registers interest in `request_id`; wakes are kept until awaited.
    pub fn register(&self, request_id: Uuid) -> Arc<Notify> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(request_id).or_default().clone()
    }

    pub fn remove(&self, request_id: Uuid) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.remove(&request_id);
    }

    pub fn wake(&self, request_id: Uuid) {
        let map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(notify) = map.get(&request_id) {
            notify.notify_one();
        }
    }
}
