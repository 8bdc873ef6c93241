//! `GET /internal/quiet`: what a role still has to do before the bank holds nothing in flight.
//!
//! A quiesced backup in distributed mode (the gateway's `POST /quiesce`) pauses new writes and
//! then asks every role until each answers all zeros: no event left in its outbox, no event its
//! consumer group has not applied, no request short of a final state. Only then is one
//! `pg_dump` of the bank's database a complete cut: Kafka holds nothing the database lacks.
//! Every replica of a role shares its schema and its consumer group, so any one answers for all.

use crate::db::BoxFuture;
use crate::http::require_internal;
use crate::ApiError;
use axum::extract::State;
use axum::routing::get;
use axum::{middleware, Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The path every role with events or requests answers.
pub const PATH: &str = "/internal/quiet";

/// What a role has not finished yet; fields that do not apply to the role are 0.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quiet {
    /// Events committed to the role's outbox and not yet on the bus.
    pub unsent_events: i64,
    /// Events on the role's topics its consumer group has not committed yet.
    pub lag: i64,
    /// Requests not in a final state (the request role only).
    pub pending_requests: i64,
}

impl Quiet {
    /// Whether nothing is left to do.
    pub fn is_quiet(&self) -> bool {
        *self == Quiet::default()
    }
}

/// Measures a role's [`Quiet`] now.
pub type QuietProbe = Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<Quiet>> + Send + Sync>;

/// `GET /internal/quiet`, behind the internal token like every internal route.
pub fn router(probe: QuietProbe, internal_token: Arc<str>) -> Router {
    Router::new()
        .route(PATH, get(answer))
        .route_layer(middleware::from_fn_with_state(
            internal_token,
            require_internal,
        ))
        .with_state(probe)
}

async fn answer(State(probe): State<QuietProbe>) -> Result<Json<Quiet>, ApiError> {
    probe()
        .await
        .map(Json)
        .map_err(|error| ApiError::internal(format!("measuring quiet: {error:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_all_zeros_is_quiet_and_the_fields_are_camel_case() {
        assert!(Quiet::default().is_quiet());
        let lagging = Quiet {
            lag: 3,
            ..Quiet::default()
        };
        assert!(!lagging.is_quiet());
        assert_eq!(
            serde_json::to_value(lagging).unwrap(),
            serde_json::json!({"unsentEvents": 0, "lag": 3, "pendingRequests": 0})
        );
    }
}
