//! The client side of the bank's HTTP contract (docs/api.md), in one place for every client: the
//! CLI (`onlinebank client`), the load generator (`onlinebank bench`) and the end-to-end, crash
//! and chaos tests:
//!
//! - `wire`: the JSON bodies as typed structs: sign-up, login and write requests; a session, a
//!   request, a balance or history read and its answer, an account, a transaction and a page of
//!   them; the error body and its codes;
//! - `http`: `Client`, one method per call, answers reduced to status, body and headers;
//! - `outcome`: what the answer to a write means: done, refused (nothing happened;
//!   `service_busy` may be retried), pending, or unknown (resolve it with the same
//!   Idempotency-Key);
//! - `resolve`: turning a pending or unknown outcome into a definitive one;
//! - `account_check`: the consistency check of one account (balance == sum of its transactions ==
//!   every store's view; the transactions hold exactly the writes that completed, each once).

pub mod account_check;
pub mod http;
pub mod outcome;
pub mod resolve;
pub mod wire;

pub use http::{Client, Reply};
pub use outcome::{classify_request, classify_write, error_code, Outcome};
pub use resolve::{resolve, send, send_resolved, Transport};
pub use wire::{ErrorCode, Write, WriteKind};
