//! Prometheus metrics: one recorder per process, `/metrics` on every role, and the counting and
//! timing of HTTP calls by role, route and status ([`record_call`], from `trace::observe`).
//!
//! Every name starts with `onlinebank_` (README lists them all), among them
//! `onlinebank_http_requests_total`, `onlinebank_http_request_duration_seconds` (histogram),
//! `onlinebank_shed_total`, `onlinebank_breaker_state` (0 closed, 1 open, 2 half-open),
//! `onlinebank_breaker_transitions_total`, `onlinebank_outbox_backlog`,
//! `onlinebank_consumer_lag`, `onlinebank_build_info` (1, labelled with what runs).

use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often the recorder's histogram samples are drained into their buckets and summaries.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process's recorder (once) and returns its handle.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("onlinebank_http_request_duration_seconds".to_owned()),
                    &buckets,
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    // Histograms and summaries hold every sample until upkeep drains them; a
                    // recorder without its own HTTP listener must run upkeep itself, or memory
                    // grows with every call while nobody scrapes /metrics.
                    let upkeep = handle.clone();
                    let spawned = std::thread::Builder::new()
                        .name("metrics-upkeep".into())
                        .spawn(move || loop {
                            std::thread::sleep(UPKEEP_EVERY);
                            upkeep.run_upkeep();
                        });
                    if let Err(error) = spawned {
                        tracing::warn!(%error, "metrics upkeep not started");
                    }
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// `GET /metrics` in the Prometheus text format.
pub fn router() -> Router {
    Router::new().route(
        "/metrics",
        get(|| async {
            let body = install().map(|handle| handle.render()).unwrap_or_default();
            (
                [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                body,
            )
                .into_response()
        }),
    )
}

/// Sets `onlinebank_build_info` to 1, labelled with the process's version, commit, sqlite, profile and
/// roles (comma-joined): the facts of `GET /info`, for joining with other series in queries.
pub fn build_info(info: &crate::build_info::ProcessInfo) {
    let build = info.build;
    metrics::gauge!(
        "onlinebank_build_info",
        "version" => build.version,
        "commit" => build.commit,
        "sqlite" => build.sqlite,
        "profile" => build.profile,
        "roles" => info.roles_label()
    )
    .set(1.0);
}

/// The method as a label, if it is one the bank answers (the server answers any other 501
/// before any route, so the label set is closed). `TRACE` (RFC 9110, 9.3.8) and `QUERY` (the
/// IETF HTTP QUERY method) are HTTP's own: the bank knows them and serves them on no route, so a
/// route answers them 405 with `Allow` (501 is for a method the server does not recognise).
pub fn method_label(method: &http::Method) -> Option<&'static str> {
    use http::Method;
    let label = match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        _ if method.as_str() == "QUERY" => "QUERY",
        _ => return None,
    };
    Some(label)
}

/// Counts and times one call of `role`. Every label comes from a closed set (a stranger cannot
/// add series): the method from [`method_label`] (or `other`, which the server never lets
/// through), the route from the router's templates (or `unmatched`), the status from the answer.
pub fn record_call(
    role: &'static str,
    method: &'static str,
    route: String,
    status: u16,
    elapsed: std::time::Duration,
) {
    metrics::counter!("onlinebank_http_requests_total", "role" => role, "method" => method, "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("onlinebank_http_request_duration_seconds", "role" => role, "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
}
