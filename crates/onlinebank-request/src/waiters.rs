//! Handlers waiting for their request's outcome, woken by the outcome consumer.

use onlinebank_core::ids::RequestId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug, Clone, Default)]
pub struct Waiters(Arc<Mutex<HashMap<RequestId, Arc<Notify>>>>);

impl Waiters {
    /// Registers interest in `request_id`; wakes are kept until awaited.
    pub fn register(&self, request_id: RequestId) -> Arc<Notify> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(request_id).or_default().clone()
    }

    pub fn remove(&self, request_id: RequestId) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.remove(&request_id);
    }

    pub fn wake(&self, request_id: RequestId) {
        let map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(notify) = map.get(&request_id) {
            notify.notify_one();
        }
    }
}
