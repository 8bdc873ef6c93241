//! What every end-to-end test stands on: the real `onlinebank` binary started on free ports with a
//! fresh data directory (`TestBank` for `up`, `Cluster` for one process per role), an HTTP client
//! with one helper per flow, and poll-with-deadline helpers for eventually consistent reads.
//!
//! Every child process is killed when its owner drops, also when the test panics; a panicking
//! test prints the tail of each process's log.
//!
//! - `processes`: child processes, their logs and ready lines;
//! - `bank`: `onlinebank up` (`TestBank`);
//! - `cluster`: one process per role (`Cluster`);
//! - `distributed`: a PostgreSQL database and a Kafka namespace per test;
//! - `ops`: the internal endpoints, every store's snapshot and its consistency, `/metrics`;
//! - `api`: the gateway's HTTP API (`Api`, `Req`, `Reply`, `Customer`), its bodies
//!   `onlinebank_client`'s wire types;
//! - `writes`: writes whose outcome a client must learn, through `onlinebank_client` (the same
//!   classification and resolution as the CLI's and the bench's), and `Op`, one write of the crash
//!   and chaos tests;
//! - `checks`: assertions on answers, polling with a deadline, small helpers.

mod api;
mod bank;
mod checks;
mod cluster;
mod distributed;
mod ops;
mod processes;
mod writes;

pub use api::*;
pub use bank::*;
pub use checks::*;
pub use cluster::*;
pub use distributed::*;
pub use ops::*;
pub use processes::*;
pub use writes::*;

use std::time::Duration;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_onlinebank");
/// How long a process may take to print its ready line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Default deadline for eventually consistent reads.
pub const SETTLE: Duration = Duration::from_secs(20);

/// The default per-role start order for a cluster.
pub const ROLES: [&str; 6] = ["auth", "account", "history", "mypage", "request", "gateway"];
