//! Retention: what the bus side keeps only for a while. Every `--retention-secs` (7 days by
//! default) window, a role forgets the inbox rows of events processed before it, and the
//! embedded log deletes the events every group reading their topic has committed past and that
//! were appended before it (in its own table, and in the outboxes this process serves as the
//! log). On Kafka the topics' own `retention.ms` plays the log's part (it must
//! not exceed the window: an inbox must remember every event the bus can still deliver).

use crate::Bus;
use onlinebank_core::db::Db;
use onlinebank_core::log_limit::LogLimit;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often retention runs for `window`: every minute, or a quarter of a shorter window.
pub fn interval(window: Duration) -> Duration {
    (window / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Purges `db`'s inbox and (when it is given and embedded) the event log, every
/// [`interval`], until `shutdown`.
pub async fn run(db: Option<Db>, bus: Option<Bus>, window: Duration, shutdown: CancellationToken) {
    let every = interval(window);
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let source = db.as_ref().map_or("bus", |db| &*db.schema).to_owned();
    let mut inbox_log = LogLimit::new(
        "purging the inbox failed",
        "purging the inbox works again",
        source.clone(),
    );
    let mut events_log = LogLimit::new(
        "purging the event log failed",
        "purging the event log works again",
        source,
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        let before = onlinebank_core::time::now_ms().saturating_sub(window_ms);
        if let Some(db) = &db {
            match inbox_log.note(crate::inbox::purge(db, before).await) {
                Ok(0) | Err(_) => {}
                Ok(deleted) => {
                    metrics::counter!("onlinebank_retention_deleted_total", "what" => "inbox")
                        .increment(deleted);
                }
            }
        }
        if let Some(Bus::Embedded(log)) = &bus {
            match events_log.note(log.purge(before).await) {
                Ok(0) | Err(_) => {}
                Ok(deleted) => {
                    metrics::counter!("onlinebank_retention_deleted_total", "what" => "events")
                        .increment(deleted);
                }
            }
        }
    }
}
