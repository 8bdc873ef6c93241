//! What the answer to a write (`POST /api/v1/requests`, or the original system's `POST /requests`)
//! tells the client about whether it happened, as docs/api.md defines it:
//!
//! - 200 `completed` (legacy: 201 `RequestCompleted`): done, the balance moved;
//! - 4xx: a definite refusal with its code, nothing happened;
//! - 503 `service_busy`: nothing happened either (the key, if any, was released), and a retry is
//!   the expected answer to it;
//! - 202: the request exists, its outcome comes later (poll it by id);
//! - everything else (502/504 `outcome_unknown`, other 5xx, transport failures, a key still in
//!   flight): the write may or may not have happened; resolve it by re-sending it with the same
//!   Idempotency-Key.
//!
//! This is the only place that decides it; the bodies are read through `wire`'s types.

use crate::wire::{self, ErrorCode, LegacyRequest, Request};
use serde_json::Value;

/// What a write's answer tells the client about whether it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the balance moved. The contract puts the request id and the balance in the answer.
    Completed {
        id: Option<String>,
        balance: Option<i64>,
    },
    /// A definite refusal (4xx, or a request cancelled with `reason`): nothing happened.
    Refused { code: String, id: Option<String> },
    /// 503 `service_busy`: refused, nothing happened, retry shortly. (A re-send that answers busy
    /// proves nothing about an earlier attempt: resolution keeps trying.)
    Busy,
    /// 202: the request exists, its outcome comes later.
    Pending { id: String },
    /// May or may not have happened: resolve before judging. `id` when the answer carried one.
    Unknown { label: String, id: Option<String> },
}

impl Outcome {
    /// A write whose answer never arrived (transport failure, client timeout).
    pub fn lost(label: impl Into<String>) -> Outcome {
        Outcome::Unknown {
            label: label.into(),
            id: None,
        }
    }

    /// Completed or refused: nothing left to find out.
    pub fn is_definitive(&self) -> bool {
        matches!(self, Outcome::Completed { .. } | Outcome::Refused { .. })
    }

    /// The request id the answer carried, if any.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Outcome::Completed { id, .. }
            | Outcome::Refused { id, .. }
            | Outcome::Unknown { id, .. } => id.as_deref(),
            Outcome::Pending { id } => Some(id),
            Outcome::Busy => None,
        }
    }

    /// How the answer is counted: `completed`, the refusal's code, `service_busy`, `pending_202`,
    /// or the unknown outcome's label (an error code, `http_<status>`, `transport_<kind>`, ...).
    pub fn label(&self) -> String {
        match self {
            Outcome::Completed { .. } => "completed".to_owned(),
            Outcome::Refused { code, .. } => code.clone(),
            Outcome::Busy => "service_busy".to_owned(),
            Outcome::Pending { .. } => "pending_202".to_owned(),
            Outcome::Unknown { label, .. } => label.clone(),
        }
    }
}

/// `{"error":{"code":...}}`
pub fn error_code(body: &Value) -> Option<ErrorCode> {
    wire::error_of(body).map(|error| error.code)
}

/// The contract's error code of an answer, else `http_<status>`.
pub fn http_label(status: u16, code: Option<&ErrorCode>) -> String {
    code.map_or_else(|| format!("http_{status}"), |code| code.as_str().to_owned())
}

/// Classifies the answer to `POST /api/v1/requests`.
pub fn classify_write(status: u16, body: &Value) -> Outcome {
    let request: Request = wire::decode(body);
    let code = error_code(body);
    if status == 200 && request.is_completed() {
        return completed(request.request_id, request.balance);
    }
    classify(status, code, request.request_id)
}

/// Classifies the answer to the original system's `POST /requests`: 201 with `RequestCompleted`
/// is done, 202 pending (its id is `id`), the rest as for a v1 write.
pub fn classify_legacy_write(status: u16, body: &Value) -> Outcome {
    let request: LegacyRequest = wire::decode(body);
    if status == 201 && request.request_status.as_deref() == Some("RequestCompleted") {
        return completed(request.id, request.balance);
    }
    classify(status, request.error.map(|error| error.code), request.id)
}

/// Done: the request id and the balance the answer carried.
fn completed(id: Option<String>, balance: Option<i64>) -> Outcome {
    Outcome::Completed { id, balance }
}

/// A write's answer that is not a completion.
fn classify(status: u16, code: Option<ErrorCode>, id: Option<String>) -> Outcome {
    match (status, &code) {
        (202, _) => match id {
            Some(id) => Outcome::Pending { id },
            None => Outcome::lost("pending_202"),
        },
        (503, Some(ErrorCode::ServiceBusy)) => Outcome::Busy,
        // "In flight" is not an outcome: resolve it later like an unknown one.
        (409, Some(ErrorCode::IdempotencyKeyInFlight)) => Outcome::Unknown {
            label: ErrorCode::IdempotencyKeyInFlight.as_str().to_owned(),
            id,
        },
        (400..=499, _) => Outcome::Refused {
            code: http_label(status, code.as_ref()),
            id,
        },
        _ => Outcome::Unknown {
            label: http_label(status, code.as_ref()),
            id,
        },
    }
}

/// Classifies the answer to `GET /api/v1/requests/{id}` about the write with that id: completed,
/// still pending, cancelled (refused with its `reason`), not known under this id (unknown without
/// an id: ask by key instead), or no answer yet (unknown, keep asking by id).
pub fn classify_request(status: u16, body: &Value, id: &str) -> Outcome {
    let mut request: Request = wire::decode(body);
    let code = request.error.take().map(|error| error.code);
    match (status, code) {
        (200, _) if request.is_completed() => completed(Some(id.to_owned()), request.balance),
        (200, _) => Outcome::Pending { id: id.to_owned() },
        (404, Some(ErrorCode::RequestCancelled)) => Outcome::Refused {
            code: request
                .reason
                .unwrap_or_else(|| ErrorCode::RequestCancelled.as_str().to_owned()),
            id: Some(id.to_owned()),
        },
        (404, code) => Outcome::Unknown {
            label: http_label(status, code.as_ref()),
            id: None,
        },
        (_, code) => Outcome::Unknown {
            label: http_label(status, code.as_ref()),
            id: Some(id.to_owned()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_are_classified_by_the_contract() {
        let completed = classify_write(
            200,
            &json!({"status":"completed","balance":5,"requestId":"r"}),
        );
        assert_eq!(
            completed,
            Outcome::Completed {
                id: Some("r".into()),
                balance: Some(5)
            }
        );
        let refused = classify_write(
            409,
            &json!({"error":{"code":"insufficient_funds","message":"x"},"requestId":"r"}),
        );
        assert_eq!(
            refused,
            Outcome::Refused {
                code: "insufficient_funds".into(),
                id: Some("r".into())
            }
        );
        // Busy: nothing happened (docs/api.md), a refusal, not an unknown outcome.
        let busy = classify_write(503, &json!({"error":{"code":"service_busy","message":"x"}}));
        assert_eq!(busy, Outcome::Busy);
        assert_eq!(busy.label(), "service_busy");
        assert!(!busy.is_definitive());
        let pending = classify_write(202, &json!({"requestId":"abc","status":"pending"}));
        assert_eq!(pending, Outcome::Pending { id: "abc".into() });
        let lost = classify_write(
            504,
            &json!({"error":{"code":"outcome_unknown","message":"x"}}),
        );
        assert!(
            matches!(&lost, Outcome::Unknown { label, id: None } if label == "outcome_unknown")
        );
        let bad_gateway = classify_write(502, &json!({"error":{"code":"outcome_unknown"}}));
        assert_eq!(bad_gateway.label(), "outcome_unknown");
        let in_flight = classify_write(409, &json!({"error":{"code":"idempotency_key_in_flight"}}));
        assert!(matches!(in_flight, Outcome::Unknown { .. }));
        assert_eq!(classify_write(500, &json!("oops")).label(), "http_500");
        assert_eq!(
            Outcome::lost("transport_timeout").label(),
            "transport_timeout"
        );
    }

    #[test]
    fn legacy_writes_and_polls_are_classified() {
        let done =
            classify_legacy_write(201, &json!({"id":"i","requestStatus":"RequestCompleted"}));
        assert!(matches!(done, Outcome::Completed { id: Some(id), .. } if id == "i"));
        let later = classify_legacy_write(202, &json!({"id":"i"}));
        assert_eq!(later, Outcome::Pending { id: "i".into() });
        let lost =
            classify_legacy_write(504, &json!({"id":"i","error":{"code":"outcome_unknown"}}));
        assert_eq!(lost.request_id(), Some("i"));

        let polled = classify_request(200, &json!({"status":"completed","balance":3}), "i");
        assert!(polled.is_definitive());
        assert_eq!(
            classify_request(200, &json!({"status":"pending"}), "i"),
            Outcome::Pending { id: "i".into() }
        );
        let cancelled = classify_request(
            404,
            &json!({"error":{"code":"request_cancelled"},"reason":"insufficient_funds"}),
            "i",
        );
        assert_eq!(cancelled.label(), "insufficient_funds");
        let unknown_id = classify_request(404, &json!({"error":{"code":"request_not_found"}}), "i");
        assert_eq!(unknown_id.request_id(), None);
        assert_eq!(
            classify_request(502, &json!(null), "i").request_id(),
            Some("i")
        );
    }
}
