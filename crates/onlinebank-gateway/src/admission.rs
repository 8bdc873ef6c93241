//! Admission to everything a stranger can make run an argon2id: sign-up, login, and the legacy
//! endpoints' credential logins (`POST /requests` bodies, HTTP Basic on the legacy reads).
//!
//! Strangers must not be able to take a customer's capacity: these calls have places of their
//! own, apart from the write slots of money requests, and each client has a share of them, so one
//! client flooding logins waits on its own share. A share is keyed by the client's
//! [`ClientKey`] (its IPv4 address, or its IPv6 /64: one host holds a whole /64), never the full
//! address. A call that finds no free place within `--public-wait-ms` answers 503 `service_busy` with
//! `Retry-After` instead of queueing for longer. The place is taken only once the body is read
//! (the server reads every body first), so stalled bodies hold no place. auth bounds the argon2
//! work itself on top of this.
//!
//! The map of shares holds only the clients with a call in progress (waiting or running): the last
//! call of a client to leave removes its share. So its size is bounded by the calls in flight
//! (themselves bounded by the connection cap), no call ever scans it, and [`MAX_CLIENTS`] is a
//! hard bound past which a new client is answered busy.

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use onlinebank_core::client_addr::{ClientAddr, ClientKey};
use onlinebank_core::ApiError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Clients with a call in progress at once, at most; past this, a new client is answered busy.
const MAX_CLIENTS: usize = 65_536;

/// Each client's share, by key, while it has a call in progress.
type Shares = Arc<Mutex<HashMap<ClientKey, Arc<Semaphore>>>>;

/// Places for unauthenticated calls: a total and a share per client.
#[derive(Debug)]
pub struct PublicAdmission {
    /// Places over every client.
    total: Arc<Semaphore>,
    /// Places one client may hold at once.
    per_client: usize,
    /// Each client's share, created on its first call, removed when its last call ends.
    clients: Shares,
    /// How long a call may wait for a place.
    wait: Duration,
    /// Clients with a call in progress at once, at most ([`MAX_CLIENTS`]).
    max_clients: usize,
}

/// A call's places, given back when it ends.
pub struct Admitted {
    // Fields drop in order: the total's place first, then the client's.
    _total: OwnedSemaphorePermit,
    _client: ShareHold,
}

/// One call's hold on its client's share (waiting for a place or holding one). The last hold of a
/// client to go removes the share from the map.
struct ShareHold {
    /// The map the share is in.
    clients: Shares,
    /// Whose share.
    key: ClientKey,
    /// The share itself (taken out when the hold goes).
    share: Option<Arc<Semaphore>>,
    /// The place taken in it, once there is one.
    place: Option<OwnedSemaphorePermit>,
}

fn lock(clients: &Shares) -> MutexGuard<'_, HashMap<ClientKey, Arc<Semaphore>>> {
    clients
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for ShareHold {
    fn drop(&mut self) {
        // The place holds the share too: give it back before counting who else holds it.
        self.place = None;
        let Some(share) = self.share.take() else {
            return;
        };
        let mut clients = lock(&self.clients);
        // Holds are only made under this lock, and each lets go of the share under it: two
        // references (the map's and this one) mean nobody else waits on or holds the share.
        if Arc::strong_count(&share) == 2 {
            clients.remove(&self.key);
        }
        drop(share);
        drop(clients);
    }
}

impl PublicAdmission {
    pub fn new(total: usize, per_client: usize, wait: Duration) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total)),
            per_client,
            clients: Arc::default(),
            wait,
            max_clients: MAX_CLIENTS,
        }
    }

    /// A hold on `client`'s share (made on its first call) and the share to wait on, or `None`
    /// past [`MAX_CLIENTS`].
    fn hold(&self, client: ClientKey) -> Option<(ShareHold, Arc<Semaphore>)> {
        let mut clients = lock(&self.clients);
        if !clients.contains_key(&client) && clients.len() >= self.max_clients {
            return None;
        }
        let share = clients
            .entry(client)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_client)))
            .clone();
        let hold = ShareHold {
            clients: self.clients.clone(),
            key: client,
            share: Some(share.clone()),
            place: None,
        };
        Some((hold, share))
    }

    /// Clients whose share is in the map now.
    #[cfg(test)]
    fn clients_held(&self) -> usize {
        lock(&self.clients).len()
    }

    /// Waits (bounded) for a place in `client`'s share and one in the total.
    pub async fn admit(&self, client: ClientKey) -> Result<Admitted, ApiError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let busy = |why: &'static str| {
            metrics::counter!("onlinebank_shed_total", "role" => "gateway", "why" => why)
                .increment(1);
            ApiError::busy()
        };
        let (mut hold, share) = self.hold(client).ok_or_else(|| busy("clients"))?;
        let place = tokio::time::timeout_at(deadline, share.acquire_owned())
            .await
            .map_err(|_| busy("per_client"))?
            .map_err(|_| busy("per_client"))?;
        hold.place = Some(place);
        let total = tokio::time::timeout_at(deadline, self.total.clone().acquire_owned())
            .await
            .map_err(|_| busy("public"))?
            .map_err(|_| busy("public"))?;
        Ok(Admitted {
            _total: total,
            _client: hold,
        })
    }
}

/// The share key of a call: its client's (the server puts a [`ClientAddr`] on every call). A call
/// without one shares the one key of every such call, rather than having no share at all.
pub fn client_key(request: &http::Extensions) -> ClientKey {
    request
        .get::<ClientAddr>()
        .copied()
        .map(ClientAddr::key)
        .unwrap_or_default()
}

/// A handler's argument: the share key of its call (see [`client_key`]).
pub struct Client(pub ClientKey);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Client(client_key(&parts.extensions)))
    }
}

/// Middleware for sign-up and login: runs the call only with a place.
pub async fn admit_public(
    State(admission): State<Arc<PublicAdmission>>,
    request: Request,
    next: Next,
) -> Response {
    match admission.admit(client_key(request.extensions())).await {
        Ok(_places) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn key(address: &str) -> ClientKey {
        let address: IpAddr = address.parse().unwrap();
        ClientAddr(address).key()
    }

    fn is_busy(admitted: &Result<Admitted, ApiError>) -> bool {
        matches!(admitted, Err(error) if error.code == "service_busy")
    }

    #[tokio::test]
    async fn one_client_cannot_take_another_clients_places() {
        let admission = PublicAdmission::new(8, 2, Duration::from_millis(50));
        let first = admission.admit(key("127.0.0.1")).await;
        let second = admission.admit(key("127.0.0.1")).await;
        assert!(first.is_ok() && second.is_ok());
        assert!(is_busy(&admission.admit(key("127.0.0.1")).await));
        assert!(admission.admit(key("127.0.0.2")).await.is_ok());
    }

    #[tokio::test]
    async fn two_addresses_of_one_ipv6_slash_64_share_one_share() {
        let admission = PublicAdmission::new(8, 2, Duration::from_millis(50));
        let first = admission.admit(key("2001:db8:1:2::1")).await;
        let second = admission.admit(key("2001:db8:1:2:ffff:ffff:ffff:9")).await;
        assert!(first.is_ok() && second.is_ok());
        // A third address of the same /64 finds its share full ...
        assert!(is_busy(&admission.admit(key("2001:db8:1:2:aaaa::5")).await));
        // ... the next /64 has a share of its own.
        assert!(admission.admit(key("2001:db8:1:3::1")).await.is_ok());
        assert_eq!(
            admission.clients_held(),
            1,
            "the second /64's call has ended"
        );
    }

    #[tokio::test]
    async fn a_place_given_back_is_taken_by_a_waiting_call() {
        let admission = Arc::new(PublicAdmission::new(1, 1, Duration::from_secs(2)));
        let held = admission.admit(key("127.0.0.1")).await;
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit(key("127.0.0.1")).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        assert!(waiting.await.unwrap_or(false));
    }

    #[tokio::test]
    async fn clients_whose_calls_ended_leave_nothing_behind() {
        let admission = PublicAdmission::new(4, 1, Duration::from_millis(20));
        for n in 0..1_000u32 {
            let address = IpAddr::from((0x0a00_0000 + n).to_be_bytes());
            let admitted = admission.admit(ClientAddr(address).key()).await;
            assert!(admitted.is_ok());
        }
        assert_eq!(admission.clients_held(), 0);
        // A call that gave up waiting leaves nothing either; a call in progress keeps its share.
        let held = admission.admit(key("10.9.9.9")).await;
        assert!(is_busy(&admission.admit(key("10.9.9.9")).await));
        assert_eq!(admission.clients_held(), 1);
        drop(held);
        assert_eq!(admission.clients_held(), 0);
    }

    #[tokio::test]
    async fn past_the_most_clients_in_progress_a_new_client_is_busy_until_one_ends() {
        let mut admission = PublicAdmission::new(8, 1, Duration::from_millis(20));
        admission.max_clients = 2;
        let first = admission.admit(key("10.0.0.1")).await;
        let second = admission.admit(key("10.0.0.2")).await;
        assert!(first.is_ok() && second.is_ok());
        assert!(is_busy(&admission.admit(key("10.0.0.3")).await));
        drop(first);
        assert!(admission.admit(key("10.0.0.3")).await.is_ok());
    }

    #[test]
    fn a_call_without_a_client_address_shares_one_key_with_every_such_call() {
        let mut extensions = http::Extensions::new();
        assert_eq!(client_key(&extensions), ClientKey::default());
        extensions.insert(ClientAddr("2001:db8::7".parse().unwrap()));
        assert_eq!(client_key(&extensions), key("2001:db8::1"));
    }
}
