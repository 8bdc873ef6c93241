//! Admission to the unauthenticated routes (sign-up and login).
//!
//! Strangers must not be able to take a customer's capacity: these routes have places of their
//! own, apart from the write slots of money requests, and each client address has a share of them,
//! so one client flooding logins waits on its own share. A call that finds no free place within
//! `public_wait` answers 503 `service_busy` with `Retry-After` instead of queueing for longer. The
//! place is taken only once the body is read (the server reads every body first), so stalled
//! bodies hold no place. auth bounds the argon2 work itself on top of this.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use onlinebank_core::server::ClientAddr;
use onlinebank_core::ApiError;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Client addresses remembered at once; past this, unused entries are dropped first.
const MAX_CLIENTS: usize = 65_536;

/// Places for unauthenticated calls: a total and a share per client address.
#[derive(Debug)]
pub struct PublicAdmission {
    /// Places over every client.
    total: Arc<Semaphore>,
    /// Places one client address may hold at once.
    per_client: usize,
    /// Each client address's share, created on its first call, dropped when unused.
    clients: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
    /// How long a call may wait for a place.
    wait: Duration,
}

/// A call's places, given back when it ends.
pub struct Admitted {
    _client: Option<OwnedSemaphorePermit>,
    _total: OwnedSemaphorePermit,
}

impl PublicAdmission {
    pub fn new(total: usize, per_client: usize, wait: Duration) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total)),
            per_client,
            clients: Mutex::new(HashMap::new()),
            wait,
        }
    }

    fn share_of(&self, client: IpAddr) -> Option<Arc<Semaphore>> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !clients.contains_key(&client) && clients.len() >= MAX_CLIENTS {
            let per_client = self.per_client;
            clients.retain(|_, share| {
                Arc::strong_count(share) > 1 || share.available_permits() < per_client
            });
            if clients.len() >= MAX_CLIENTS {
                return None;
            }
        }
        Some(
            clients
                .entry(client)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_client)))
                .clone(),
        )
    }

    /// Waits (bounded) for the client's share and a place in the total.
    pub async fn admit(&self, client: Option<ClientAddr>) -> Result<Admitted, ApiError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let busy = |why: &'static str| {
            metrics::counter!("shed_total", "role" => "gateway", "why" => why).increment(1);
            ApiError::busy()
        };
        let client_permit = match client {
            Some(ClientAddr(address)) => {
                let share = self.share_of(address).ok_or_else(|| busy("clients"))?;
                let permit = tokio::time::timeout_at(deadline, share.acquire_owned())
                    .await
                    .map_err(|_| busy("per_client"))?
                    .map_err(|_| busy("per_client"))?;
                Some(permit)
            }
            None => None,
        };
        let total = tokio::time::timeout_at(deadline, self.total.clone().acquire_owned())
            .await
            .map_err(|_| busy("public"))?
            .map_err(|_| busy("public"))?;
        Ok(Admitted {
            _client: client_permit,
            _total: total,
        })
    }
}

/// Middleware for the unauthenticated routes: runs the call only with a place.
pub async fn admit_public(
    State(admission): State<Arc<PublicAdmission>>,
    request: Request,
    next: Next,
) -> Response {
    let client = request.extensions().get::<ClientAddr>().copied();
    match admission.admit(client).await {
        Ok(_places) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(last: u8) -> Option<ClientAddr> {
        Some(ClientAddr(IpAddr::from([127, 0, 0, last])))
    }

    #[tokio::test]
    async fn one_client_cannot_take_another_clients_places() {
        let admission = PublicAdmission::new(8, 2, Duration::from_millis(50));
        let first = admission.admit(client(1)).await;
        let second = admission.admit(client(1)).await;
        assert!(first.is_ok() && second.is_ok());
        let third = admission.admit(client(1)).await;
        assert!(matches!(third, Err(error) if error.code == "service_busy"));
        assert!(admission.admit(client(2)).await.is_ok());
    }

    #[tokio::test]
    async fn a_place_given_back_is_taken_by_a_waiting_call() {
        let admission = Arc::new(PublicAdmission::new(1, 1, Duration::from_secs(2)));
        let held = admission.admit(client(1)).await;
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit(client(1)).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        assert!(waiting.await.unwrap_or(false));
    }
}
