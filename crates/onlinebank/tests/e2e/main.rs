#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end tests of onlinebank: the real binary, started on free ports, driven over HTTP as
//! docs/api.md describes it.
//!
//! - `flows`: every customer flow through `onlinebank up`.
//! - `failures`: every failure reason, with compensation.
//! - `lockout`, `bad_input`, `idempotency`, `authorization`, `legacy`, `secrets`.
//! - `backup`: a backup while deposits run is one cut; restore, its refusals, several processes.
//! - `info`: `--version`, the admin listener's `/info` and the `onlinebank_build_info` gauge.
//! - `concurrency`: parallel withdrawals and parallel opens.
//! - `cluster`: one process per role; reads survive the write side.
//! - `crash`: kill -9 of account and request mid-stream; every store agrees afterwards.
//! - `distributed`: PostgreSQL + Kafka, two processes per role (needs ONLINEBANK_TEST_POSTGRES
//!   and ONLINEBANK_TEST_KAFKA, which .ci/run sets).
//! - `quiesce`: distributed mode's quiesced backup under load: pause, pg_dump, resume, restore
//!   onto a fresh database and Kafka namespace.
//! - `doors`: strangers stalling bodies and flooding logins, timeouts, the connection cap, encoded
//!   paths, metrics only on the admin listener.
//! - `bounds`: what a stranger can make the bank hold (made-up methods, long heads, stalled
//!   bodies and their memory), strict HTTP/1.1 framing, per-client connection shares, trusted
//!   proxies, probes apart.
//! - `legacy_doors`: logout on the legacy reads, per-client shares of legacy logins, strict legacy
//!   amounts.
//! - `observability`: one call's request id and trace across the roles in JSON logs, access
//!   lines, `--help` without secrets.
//! - `openapi`: the OpenAPI document at `/api/v1/openapi.json` and its page at `/api/docs`.
//! - `offline_guessing`: a copy of the data directory gives nothing to test passwords against.
//! - `resilience`: auth frozen or killed (timeout, breaker), write overload (shedding), rolling
//!   restart of two request instances, clients hanging up, graceful shutdown, `/metrics`.
//! - `k8s`: the real local Kubernetes of dev/k8s.sh (deploy, rolling update under siege, HPA,
//!   self-healing, ConfigMap and PVC, random pod deletions); .ci/run's phase "kubernetes".
//! - `web`: the web page in headless Chromium (tests/browser/web.mjs), phone and desktop, Korean
//!   and English; and its headers and languages over plain HTTP.

mod support;

mod authorization;
mod backup;
mod bad_input;
mod bounds;
mod check;
mod client;
mod cluster;
mod concurrency;
mod crash;
mod distributed;
mod doors;
mod failures;
mod flows;
mod idempotency;
mod info;
mod k8s;
mod legacy;
mod legacy_doors;
mod limits;
mod lockout;
mod observability;
mod offline_guessing;
mod openapi;
mod quiesce;
mod resilience;
mod retention;
mod secrets;
mod sessions;
mod statement;
mod storage;
mod tls;
mod transfers;
mod upgrade;
mod web;
