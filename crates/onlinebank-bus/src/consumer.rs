//! Consuming events: batches in, one handler transaction per batch, then the position commit.
//!
//! The loop retries what fails (a batch every 200 ms, the position commit every 50 ms): while the
//! disk is full every retry fails again, so each kind of failure is logged through a
//! [`LogLimit`], the first at once and then once per 10 s with a count.

use crate::embedded::EmbeddedSubscription;
use crate::{Bus, Delivery};
use onlinebank_core::log_limit::LogLimit;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often a busy consumer commits its position.
const COMMIT_EVERY: Duration = Duration::from_millis(50);
/// On Kafka a commit is a round trip to the group coordinator: commit less often (a crash
/// re-reads at most this much more, which the inboxes skip).
const KAFKA_COMMIT_EVERY: Duration = Duration::from_millis(250);
use tokio_util::sync::CancellationToken;

/// A consumer group's subscription on some backend.
#[derive(Debug)]
pub enum Subscription {
    Embedded(EmbeddedSubscription),
    Kafka(crate::kafka::KafkaSubscription),
}

impl Subscription {
    pub async fn next_batch(&mut self, max: usize) -> anyhow::Result<Vec<Delivery>> {
        match self {
            Subscription::Embedded(sub) => sub.next_batch(max).await,
            Subscription::Kafka(sub) => sub.next_batch(max).await,
        }
    }

    pub async fn commit(&mut self, position: i64) -> anyhow::Result<()> {
        match self {
            Subscription::Embedded(sub) => sub.commit(position).await,
            Subscription::Kafka(sub) => sub.commit(position).await,
        }
    }

    pub async fn rewind(&mut self) -> anyhow::Result<()> {
        match self {
            Subscription::Embedded(sub) => sub.rewind().await,
            Subscription::Kafka(sub) => sub.rewind().await,
        }
    }
}

/// What a role consumes: `topics`, at most `batch` events per handler call.
#[derive(Debug, Clone, Copy)]
pub struct Consumes {
    pub topics: &'static [&'static str],
    pub batch: usize,
}

/// One consumer group on the bus (named after its role), what it consumes, and when it stops.
#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    pub bus: Bus,
    /// The role whose group it is (one role may read as several groups).
    pub role: &'static str,
    pub name: &'static str,
    pub consumes: Consumes,
    pub shutdown: CancellationToken,
}

/// Feeds the group's topics to `handler` in batches of up to `consumes.batch` events, until
/// `shutdown`.
///
/// The handler applies a whole batch in one database transaction (with its inbox) and returns
/// only after it committed; then the group's position moves past the batch (committed at most
/// every 50 ms, and on shutdown). A failed batch is retried from the last committed position
/// after a short pause: events are never skipped.
pub async fn run<H, Fut>(group: ConsumerGroup, mut handler: H)
where
    H: FnMut(Vec<Delivery>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let ConsumerGroup {
        bus,
        role: _,
        name: group,
        consumes: Consumes { topics, batch },
        shutdown,
    } = group;
    let mut subscribing = LogLimit::new("subscribe failed, retrying", "subscribed", group);
    let mut subscription = loop {
        match bus.subscribe(group, topics).await {
            Ok(subscription) => {
                subscribing.succeeded();
                break subscription;
            }
            Err(error) => {
                subscribing.failed(&error);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    };
    // The group's lag, refreshed every second also while the consumer waits for events.
    let lag_bus = bus.clone();
    let lag_shutdown = shutdown.clone();
    tokio::spawn(async move {
        loop {
            if let Ok(lag) = lag_bus.lag(group, topics).await {
                metrics::gauge!("onlinebank_consumer_lag", "group" => group).set(lag as f64);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = lag_shutdown.cancelled() => return,
            }
        }
    });
    // Applied but not yet committed: positions are committed at most every `commit_every` (and on
    // shutdown). A crash in between redelivers those events; the handlers' inboxes skip them.
    let mut uncommitted: Option<i64> = None;
    let commit_every = match subscription {
        Subscription::Embedded(_) => COMMIT_EVERY,
        Subscription::Kafka(_) => KAFKA_COMMIT_EVERY,
    };
    let mut last_commit = Instant::now();
    let mut logs = ConsumerLogs::new(group);
    loop {
        let batch = tokio::select! {
            batch = subscription.next_batch(batch) => batch,
            _ = tokio::time::sleep(commit_every), if uncommitted.is_some() => {
                commit(&mut subscription, &mut uncommitted, &mut logs.commit).await;
                last_commit = Instant::now();
                continue;
            }
            _ = shutdown.cancelled() => {
                commit(&mut subscription, &mut uncommitted, &mut logs.commit).await;
                return;
            }
        };
        let outcome = match batch {
            Ok(batch) => {
                let last = batch.last().map(|delivery| delivery.position);
                let count = batch.len() as u64;
                handler(batch).await.map(|()| {
                    metrics::counter!("onlinebank_consumer_events_total", "group" => group)
                        .increment(count);
                    if last.is_some() {
                        uncommitted = last;
                    }
                })
            }
            Err(error) => Err(error),
        };
        if outcome.is_ok() && last_commit.elapsed() >= commit_every {
            commit(&mut subscription, &mut uncommitted, &mut logs.commit).await;
            last_commit = Instant::now();
        }
        if logs.batch.note(outcome).is_err() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.cancelled() => return,
            }
            commit(&mut subscription, &mut uncommitted, &mut logs.commit).await;
            let rewound = subscription.rewind().await;
            let _ = logs.rewind.note(rewound);
        }
    }
}

/// The consumer loop's repeating failures, each logged at most once per period.
struct ConsumerLogs {
    /// Committing the group's position.
    commit: LogLimit,
    /// Applying a batch.
    batch: LogLimit,
    /// Re-reading from the committed position after a failed batch.
    rewind: LogLimit,
}

impl ConsumerLogs {
    fn new(group: &str) -> Self {
        Self {
            commit: LogLimit::new(
                "committing the position failed",
                "committing the position works again",
                group,
            ),
            batch: LogLimit::new(
                "consumer batch failed, retrying",
                "consumer batches apply again",
                group,
            ),
            rewind: LogLimit::new("consumer rewind failed", "consumer rewinds again", group),
        }
    }
}

/// Commits the group's position past everything applied so far.
async fn commit(
    subscription: &mut Subscription,
    uncommitted: &mut Option<i64>,
    log: &mut LogLimit,
) {
    let Some(position) = uncommitted.take() else {
        return;
    };
    let committed = subscription.commit(position).await;
    if log.note(committed).is_err() {
        *uncommitted = Some(position);
    }
}
