//! The client side's truth about the bank's HTTP contract (docs/api.md), in one place for the
//! load generator (`onlinebank bench`) and the end-to-end tests (the crash tests, the chaos test):
//!
//! - `answer`: what the answer to a write means: done, refused (nothing happened; `service_busy`
//!   may be retried), pending, or unknown (resolve it with the same Idempotency-Key);
//! - `resolve`: turning a pending or unknown outcome into a definitive one;
//! - `ledger`: the consistency check of one account (balance == sum of its transactions == every
//!   store's view; the ledger holds exactly the writes that completed, each once);
//! - `http`: a pooled client whose answers are reduced to status, body and request id.
//!
//! Before it existed each of those lived three times and disagreed (a 503 `service_busy` was a
//! refusal to the bench and an unknown outcome to the tests).

pub mod answer;
pub mod http;
pub mod ledger;
pub mod resolve;

pub use answer::{classify_request, classify_write, error_code, Answer};
pub use resolve::{resolve, send, send_resolved, Transport};
