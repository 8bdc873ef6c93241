//! The embedded durable event log: one SQLite file (`bus.db` in the data directory).
//!
//! Every process that shares the data directory opens the same file, so `onlinebank up` (all roles
//! in one process) and `onlinebank serve <role>` (one process per role) use the same log. Records
//! are appended in one transaction per batch with `synchronous=FULL`; a record's position is its
//! total order. Consumer groups keep their committed position in the same file.
//!
//! Consumers in this process are woken at once through a per-topic append counter (a `watch`
//! channel), and skip the query entirely when nothing was appended to their topics since they
//! last caught up; consumers in other processes notice new records by polling every few
//! milliseconds.

use crate::{Delivery, Record};
use onlinebank_core::args;
use onlinebank_core::db::{Arg, Db};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// How often an idle consumer looks for records published by another process. Right after
/// records arrived it looks again after 1 ms, doubling up to this.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct EmbeddedLog {
    db: Db,
    /// Per topic, a counter bumped whenever this process appends to it: wakes this process's
    /// consumers of that topic.
    appended: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
    /// The longest an idle consumer waits before looking for other processes' records.
    poll_max: Duration,
}

/// Events deleted per transaction by [`EmbeddedLog::purge`].
const PURGE_BATCH: i64 = 5_000;

impl EmbeddedLog {
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let db = Db::open(&path.display().to_string(), "bus").await?;
        db.write(|conn| {
            Box::pin(async move {
                conn.batch(
                    "CREATE TABLE IF NOT EXISTS events (
                        position INTEGER PRIMARY KEY AUTOINCREMENT,
                        id TEXT NOT NULL UNIQUE,
                        topic TEXT NOT NULL,
                        key TEXT NOT NULL,
                        body TEXT NOT NULL,
                        appended_at INTEGER NOT NULL
                    );
                    CREATE INDEX IF NOT EXISTS events_by_topic ON events (topic, position);
                    CREATE TABLE IF NOT EXISTS consumer_positions (
                        group_name TEXT PRIMARY KEY,
                        position INTEGER NOT NULL
                    );
                    CREATE TABLE IF NOT EXISTS subscriptions (
                        group_name TEXT NOT NULL,
                        topic TEXT NOT NULL,
                        PRIMARY KEY (topic, group_name)
                    );
                    CREATE INDEX IF NOT EXISTS events_by_age ON events (appended_at);",
                )
                .await
            })
        })
        .await
        .map_err(|error| anyhow::anyhow!("creating the event log: {error}"))?;
        Ok(Self {
            db,
            appended: Arc::default(),
            poll_max: POLL_INTERVAL,
        })
    }

    /// For a log no other process appends to (`onlinebank up`): consumers rely on the
    /// in-process wake-up and poll only as a rare fallback.
    pub fn single_process(mut self) -> Self {
        self.poll_max = Duration::from_millis(250);
        self
    }

    pub async fn publish(&self, records: &[Record]) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let now = onlinebank_core::time::now_ms();
        let owned = records.to_vec();
        // Through group commit: relays publishing at the same moment share one transaction.
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    for record in &owned {
                        conn.execute(
                            "INSERT INTO events (id, topic, key, body, appended_at)
                             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                            args![&record.id, &record.topic, &record.key, &record.body, now],
                        )
                        .await?;
                    }
                    Ok::<(), onlinebank_core::db::Error>(())
                })
            })
            .await
            .map_err(|error| anyhow::anyhow!("appending to the event log: {error}"))?;
        let mut topics: Vec<&str> = records.iter().map(|record| record.topic.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        for topic in topics {
            self.topic_counter(topic).send_modify(|count| *count += 1);
        }
        Ok(())
    }

    fn topic_counter(&self, topic: &str) -> watch::Sender<u64> {
        let mut counters = self
            .appended
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        counters
            .entry(topic.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    pub async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> anyhow::Result<EmbeddedSubscription> {
        // Which groups read which topics: what retention must wait for (see `purge`).
        let (group_name, names): (String, Vec<String>) = (
            group.to_owned(),
            topics.iter().map(|topic| (*topic).to_owned()).collect(),
        );
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    for topic in &names {
                        conn.execute(
                            "INSERT INTO subscriptions (group_name, topic) VALUES ($1, $2)
                             ON CONFLICT DO NOTHING",
                            args![&group_name, topic],
                        )
                        .await?;
                    }
                    Ok::<(), onlinebank_core::db::Error>(())
                })
            })
            .await
            .map_err(|error| anyhow::anyhow!("recording the subscription: {error}"))?;
        let committed = self.committed(group).await?;
        Ok(EmbeddedSubscription {
            log: self.clone(),
            group: group.to_owned(),
            topics: topics.iter().map(|topic| topic.to_string()).collect(),
            appended: topics
                .iter()
                .map(|topic| self.topic_counter(topic).subscribe())
                .collect(),
            caught_up: false,
            seen: vec![0; topics.len()],
            next_after: committed.unwrap_or(0),
        })
    }

    pub async fn ping(&self) -> bool {
        self.db.ping().await
    }

    /// Deletes events appended before `before` (epoch ms) that every group reading their topic
    /// has committed past. A topic's events stay while a group that subscribed to it has no
    /// position yet, or while no group reads it. Returns how many were deleted. (No ORDER BY:
    /// the age index finds the candidates, and a purge with nothing old enough reads nothing.)
    pub async fn purge(&self, before: i64) -> anyhow::Result<u64> {
        self.db
            .delete_in_batches(
                "DELETE FROM events WHERE position IN (
                    SELECT e.position FROM events e
                    WHERE e.appended_at < $1
                      AND e.position <= (
                          SELECT COALESCE(MIN(p.position), 0)
                          FROM subscriptions s
                          JOIN consumer_positions p ON p.group_name = s.group_name
                          WHERE s.topic = e.topic)
                      AND NOT EXISTS (
                          SELECT 1 FROM subscriptions s
                          WHERE s.topic = e.topic AND NOT EXISTS (
                              SELECT 1 FROM consumer_positions p
                              WHERE p.group_name = s.group_name))
                    LIMIT $2)",
                before,
                PURGE_BATCH,
            )
            .await
            .map_err(|error| anyhow::anyhow!("purging the event log: {error}"))
    }

    /// The group's committed position, if it has one.
    async fn committed(&self, group: &str) -> Result<Option<i64>, onlinebank_core::db::Error> {
        self.db
            .read()
            .await?
            .scalar(
                "SELECT position FROM consumer_positions WHERE group_name = $1",
                args![group],
            )
            .await
    }

    pub async fn lag(&self, group: &str, topics: &[&str]) -> anyhow::Result<i64> {
        let committed = self.committed(group).await?.unwrap_or(0);
        let sql = format!(
            "SELECT COUNT(*) FROM events WHERE position > $1 AND topic IN ({})",
            placeholders(2, topics.len())
        );
        let mut args = vec![Arg::Int(committed)];
        args.extend(topics.iter().map(|topic| Arg::Text(topic)));
        let lag: Option<i64> = self.db.read().await?.scalar(&sql, &args).await?;
        Ok(lag.unwrap_or(0))
    }
}

/// `$first, $first+1, ...`: `count` numbered placeholders (at least one).
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count.max(1))
        .map(|index| format!("${index}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A consumer group's reading position in the embedded log.
#[derive(Debug)]
pub struct EmbeddedSubscription {
    log: EmbeddedLog,
    group: String,
    topics: Vec<String>,
    /// The position after which the next read starts.
    next_after: i64,
    /// This process's append counters of the subscribed topics.
    appended: Vec<watch::Receiver<u64>>,
    /// The counters' values as of the last read.
    seen: Vec<u64>,
    /// The last read returned everything there was.
    caught_up: bool,
}

impl EmbeddedSubscription {
    /// Waits for and returns up to `max` records after the last one returned.
    pub async fn next_batch(&mut self, max: usize) -> anyhow::Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT position, topic, key, body FROM events
             WHERE position > $1 AND topic IN ({}) ORDER BY position LIMIT ${}",
            placeholders(2, self.topics.len()),
            2 + self.topics.len()
        );
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let single_process = self.log.poll_max > POLL_INTERVAL;
        let mut idle_wait = Duration::from_millis(1);
        loop {
            // Read and mark each counter in one step: whatever is appended from here on bumps a
            // counter we have not seen yet and wakes the wait below.
            let mut appended_since = false;
            for (counter, seen) in self.appended.iter_mut().zip(self.seen.iter_mut()) {
                let now = *counter.borrow_and_update();
                appended_since |= now != *seen;
                *seen = now;
            }
            // Alone on the log, nothing new can be there unless our topics' counters moved.
            if !(single_process && self.caught_up && !appended_since) {
                let mut args = vec![Arg::Int(self.next_after)];
                args.extend(self.topics.iter().map(|topic| Arg::Text(topic)));
                args.push(Arg::Int(limit));
                let rows: Vec<(i64, String, String, String)> =
                    self.log.db.read().await?.fetch_all(&sql, &args).await?;
                self.caught_up = rows.len() < max;
                if let Some(last) = rows.last() {
                    self.next_after = last.0;
                    return Ok(rows
                        .into_iter()
                        .map(|(position, topic, key, body)| Delivery {
                            position,
                            topic,
                            key,
                            body,
                        })
                        .collect());
                }
            }
            let wait = idle_wait.min(self.log.poll_max);
            if self.appended.is_empty() {
                tokio::time::sleep(wait).await;
            } else {
                let changes = self
                    .appended
                    .iter_mut()
                    .map(|counter| Box::pin(counter.changed()));
                let _ = tokio::time::timeout(wait, futures::future::select_all(changes)).await;
            }
            self.caught_up = false;
            idle_wait = if single_process {
                self.log.poll_max
            } else {
                idle_wait.saturating_mul(2)
            };
        }
    }

    /// Records that every record up to `position` has been applied. Never moves backwards.
    pub async fn commit(&mut self, position: i64) -> anyhow::Result<()> {
        let group = self.group.clone();
        self.log
            .db
            .write(move |conn| Box::pin(async move {
conn
                    .execute(
                        "INSERT INTO consumer_positions (group_name, position) VALUES ($1, $2)
                         ON CONFLICT (group_name) DO UPDATE SET position = MAX(position, excluded.position)",
                        args![&group, position],
                    )
                    .await
}))
            .await
            .map_err(|error| anyhow::anyhow!("committing the position: {error}"))?;
        Ok(())
    }

    /// Re-reads from the last committed position (after a failed batch).
    pub async fn rewind(&mut self) -> anyhow::Result<()> {
        self.next_after = self.log.committed(&self.group).await?.unwrap_or(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, topic: &str) -> Record {
        Record {
            id: id.into(),
            topic: topic.into(),
            key: "k".into(),
            body: format!("{{\"id\":\"{id}\"}}"),
        }
    }

    async fn count(log: &EmbeddedLog, topic: &str) -> i64 {
        log.db
            .read()
            .await
            .unwrap()
            .scalar("SELECT COUNT(*) FROM events WHERE topic = $1", args![topic])
            .await
            .unwrap()
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn retention_deletes_only_old_events_every_reader_of_their_topic_has_passed() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("bus.db")).await.unwrap();
        log.publish(&[record("a1", "a"), record("b1", "b"), record("a2", "a")])
            .await
            .unwrap();
        // Topic a: two groups, one behind. Topic b: a group subscribed but with no position yet.
        let mut fast = log.subscribe("fast", &["a"]).await.unwrap();
        let mut slow = log.subscribe("slow", &["a"]).await.unwrap();
        let _idle = log.subscribe("idle", &["b"]).await.unwrap();
        let batch = fast.next_batch(10).await.unwrap();
        fast.commit(batch[1].position).await.unwrap();
        let batch = slow.next_batch(1).await.unwrap();
        slow.commit(batch[0].position).await.unwrap();
        log.publish(&[record("c1", "c")]).await.unwrap();

        let later = onlinebank_core::time::now_ms() + 1_000;
        // Nothing is old enough yet.
        assert_eq!(log.purge(later - 60_000).await.unwrap(), 0);
        // a1 is past both readers of a; a2 only past one; b1 waits for idle's first commit; c has
        // no reader at all and is kept.
        assert_eq!(log.purge(later).await.unwrap(), 1);
        assert_eq!((count(&log, "a").await, count(&log, "b").await), (1, 1));
        assert_eq!(count(&log, "c").await, 1);
        // The slow group still reads a2, and once it has, a2 goes too.
        let batch = slow.next_batch(10).await.unwrap();
        assert_eq!(batch.len(), 1);
        slow.commit(batch[0].position).await.unwrap();
        assert_eq!(log.purge(later).await.unwrap(), 1);
        assert_eq!(count(&log, "a").await, 0);
        // A group subscribing afresh to a purged topic starts after what is gone, without error.
        let mut late = log.subscribe("late", &["a"]).await.unwrap();
        log.publish(&[record("a3", "a")]).await.unwrap();
        let batch = late.next_batch(10).await.unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].body, "{\"id\":\"a3\"}");
    }

    #[tokio::test]
    async fn records_are_read_in_order_once_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.db");
        let log = EmbeddedLog::open(&path).await.unwrap();
        log.publish(&[record("a", "t1"), record("b", "t2"), record("a", "t1")])
            .await
            .unwrap();
        log.publish(&[record("c", "t1")]).await.unwrap();
        let mut sub = log.subscribe("g", &["t1"]).await.unwrap();
        let batch = sub.next_batch(10).await.unwrap();
        let ids: Vec<_> = batch.iter().map(|d| d.body.clone()).collect();
        assert_eq!(ids, vec!["{\"id\":\"a\"}", "{\"id\":\"c\"}"]);
        sub.commit(batch[0].position).await.unwrap();
        assert_eq!(log.lag("g", &["t1"]).await.unwrap(), 1);

        // A new process opening the same file resumes after the committed position.
        drop(sub);
        let reopened = EmbeddedLog::open(&path).await.unwrap();
        let mut sub = reopened.subscribe("g", &["t1"]).await.unwrap();
        let batch = sub.next_batch(10).await.unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].body, "{\"id\":\"c\"}");
        sub.commit(batch[0].position).await.unwrap();
        // Committing an older position never moves the group backwards.
        sub.commit(1).await.unwrap();
        assert_eq!(reopened.lag("g", &["t1"]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_waiting_consumer_wakes_on_publish() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("bus.db")).await.unwrap();
        let mut sub = log.subscribe("g", &["t"]).await.unwrap();
        let publisher = log.clone();
        let waiter = tokio::spawn(async move { sub.next_batch(10).await });
        tokio::time::sleep(Duration::from_millis(30)).await;
        publisher.publish(&[record("x", "t")]).await.unwrap();
        let batch = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(batch.len(), 1);
    }
}
