//! The embedded durable event log: one SQLite file (`bus.db` in the data directory).
//!
//! Every process that shares the data directory opens the same file, so `onlinebank up` (all roles
//! in one process) and `onlinebank serve <role>` (one process per role) use the same log. Consumer
//! groups keep their committed position and their subscriptions in it.
//!
//! A topic's events are read where they are: a publisher whose database is a SQLite file serves
//! its outbox as the topic's log ([`EmbeddedLog::serve_outbox`], recorded in `outbox_sources` so
//! consumers in other processes find the file), and nothing is copied: an event is durable, in
//! order, once its publisher's transaction committed, and consumers read it from there with a
//! position of `seq + OUTBOX_POSITIONS`. Records published to the log itself (a publisher on
//! PostgreSQL, or events shipped before outboxes were served) are appended to its `events` table
//! in one transaction per batch with `synchronous=FULL`, a record's position being its total
//! order there; a group reads those first, then moves on to the outbox (its positions are
//! higher, so one committed position orders both).
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

/// Positions of events read from a publisher's outbox are its `seq` plus this: above every
/// position of the log's own `events` table, so that one committed position per group orders
/// both, and a group that read the log before its publisher served its outbox moves on.
pub const OUTBOX_POSITIONS: i64 = 1 << 40;

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
    /// Per topic, the database whose outbox is its log, as far as this process knows.
    sources: Arc<Mutex<HashMap<String, Db>>>,
    /// The outboxes this process serves (its publishers'): their retention is its job.
    served: Arc<Mutex<Vec<(String, Db)>>>,
    /// The log's folder (the data dir): an outbox file inside it is recorded by its name, so
    /// that a data dir moved or restored elsewhere still finds its own outboxes.
    dir: Arc<Path>,
}

/// Events deleted per transaction by [`EmbeddedLog::purge`].
const PURGE_BATCH: i64 = 5_000;
/// Outbox rows deleted per transaction, and the pause between two such transactions: a served
/// outbox is in a publisher's database, whose writer is on the customers' path, so its purge
/// goes in small steps that let that writer's other work through.
const OUTBOX_PURGE_BATCH: i64 = 1_000;
const OUTBOX_PURGE_PAUSE: Duration = Duration::from_millis(5);

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
                    CREATE INDEX IF NOT EXISTS events_by_age ON events (appended_at);
                    CREATE TABLE IF NOT EXISTS outbox_sources (
                        topic TEXT PRIMARY KEY,
                        path TEXT NOT NULL
                    );",
                )
                .await
            })
        })
        .await
        .map_err(|error| anyhow::anyhow!("creating the event log: {error}"))?;
        let dir = std::fs::canonicalize(path.parent().unwrap_or(Path::new(".")))?;
        let log = Self {
            db,
            appended: Arc::default(),
            poll_max: POLL_INTERVAL,
            sources: Arc::default(),
            served: Arc::default(),
            dir: dir.into(),
        };
        log.relocate_sources().await?;
        Ok(log)
    }

    /// Records of outbox files by absolute path (as releases before 0.2 kept them) that point
    /// into another folder while a file of that name is in this one: the data dir was moved or
    /// restored here, and its outboxes are these files, never the old folder's.
    async fn relocate_sources(&self) -> anyhow::Result<()> {
        let rows: Vec<(String, String)> = self
            .db
            .read()
            .await?
            .fetch_all("SELECT topic, path FROM outbox_sources", &[])
            .await?;
        for (topic, path) in rows {
            let recorded = Path::new(&path);
            let Some(name) = recorded.file_name() else {
                continue;
            };
            if !recorded.is_absolute() || !self.dir.join(name).exists() {
                continue;
            }
            let name = name.to_string_lossy().into_owned();
            if recorded.parent() != Some(&*self.dir) {
                tracing::warn!(%topic, was = %path, now = %name, "outbox source relocated into this data dir");
            }
            self.per_topic(
                "UPDATE outbox_sources SET path = $2 WHERE topic = $1",
                &[topic.as_str()],
                name,
            )
            .await
            .map_err(|error| anyhow::anyhow!("relocating the outbox source: {error}"))?;
        }
        Ok(())
    }

    /// How an outbox file is recorded: by its name when it is in the log's folder.
    fn recorded_path(&self, file: &Path) -> String {
        match file.strip_prefix(&*self.dir) {
            Ok(inside) => inside.display().to_string(),
            Err(_) => file.display().to_string(),
        }
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
        self.appended(&topics);
        Ok(())
    }

    /// Wakes this process's consumers of `topics`: something was appended to them (a
    /// publisher's transaction that wrote to its served outbox has committed).
    pub fn appended(&self, topics: &[&str]) {
        for topic in topics {
            self.topic_counter(topic).send_modify(|count| *count += 1);
        }
    }

    /// Makes `db`'s outbox (a SQLite file) the log of `topics`: consumers read its rows there,
    /// nothing is copied, and this process deletes them once every group reading the topic
    /// has passed them and they are older than the retention window (see [`Self::purge`]).
    pub async fn serve_outbox(&self, topics: &[&str], db: &Db) -> anyhow::Result<()> {
        let file = db
            .sqlite_file()
            .ok_or_else(|| anyhow::anyhow!("only a SQLite outbox can serve as the log"))?;
        let path = self.recorded_path(&file);
        self.per_topic(
            "INSERT INTO outbox_sources (topic, path) VALUES ($1, $2)
             ON CONFLICT (topic) DO UPDATE SET path = excluded.path",
            topics,
            path,
        )
        .await
        .map_err(|error| anyhow::anyhow!("recording the outbox source: {error}"))?;
        {
            let mut sources = lock(&self.sources);
            let mut served = lock(&self.served);
            for topic in topics {
                sources.insert((*topic).to_owned(), db.clone());
                served.push(((*topic).to_owned(), db.clone()));
            }
        }
        self.appended(topics);
        Ok(())
    }

    /// The database whose outbox is the log of all of `topics`, once their publisher serves
    /// it (None before). Another process's file is opened once and kept.
    async fn outbox_of(&self, topics: &[String]) -> anyhow::Result<Option<Db>> {
        let mut found: Option<Db> = None;
        for topic in topics {
            let known = lock(&self.sources).get(topic).cloned();
            let db = match known {
                Some(db) => db,
                None => {
                    let path: Option<String> = self
                        .db
                        .read()
                        .await?
                        .scalar(
                            "SELECT path FROM outbox_sources WHERE topic = $1",
                            args![topic.as_str()],
                        )
                        .await?;
                    // A file that is not there (yet) is not opened, which would create it.
                    let path = path.map(|path| self.dir.join(path));
                    let Some(path) = path.filter(|path| path.exists()) else {
                        return Ok(None);
                    };
                    let path = path.display().to_string();
                    let db = Db::open(&path, "outbox").await?;
                    lock(&self.sources)
                        .entry(topic.clone())
                        .or_insert(db)
                        .clone()
                }
            };
            match &found {
                Some(first) if first.url != db.url => {
                    anyhow::bail!("one subscription reads topics of more than one outbox")
                }
                Some(_) => {}
                None => found = Some(db),
            }
        }
        Ok(found)
    }

    fn topic_counter(&self, topic: &str) -> watch::Sender<u64> {
        let mut counters = lock(&self.appended);
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
        self.per_topic(
            "INSERT INTO subscriptions (topic, group_name) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
            topics,
            group.to_owned(),
        )
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
            outbox: None,
            queries: Queries::for_topics(topics.len()),
        })
    }

    pub async fn ping(&self) -> bool {
        self.db.ping().await
    }

    /// Runs `sql` with each of `topics` as `$1` and `value` as `$2`, in one transaction.
    async fn per_topic(
        &self,
        sql: &'static str,
        topics: &[&str],
        value: String,
    ) -> Result<(), onlinebank_core::db::GroupError<onlinebank_core::db::Error>> {
        let names: Vec<String> = topics.iter().map(|topic| (*topic).to_owned()).collect();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    for topic in &names {
                        conn.execute(sql, args![topic, &value]).await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Deletes events appended before `before` (epoch ms) that every group reading their topic
    /// has committed past: in the log's own table, and in the outboxes this process serves. A
    /// topic's events stay while a group that subscribed to it has no position yet, or while no
    /// group reads it. Returns how many were deleted.
    pub async fn purge(&self, before: i64) -> anyhow::Result<u64> {
        let mut deleted = self.purge_log(before).await?;
        let served = lock(&self.served).clone();
        for (topic, db) in served {
            deleted += self.purge_outbox(&topic, &db, before).await?;
        }
        Ok(deleted)
    }

    /// The outbox rows of `topic` created before `before` and passed by every group reading it.
    /// The rows are deleted oldest first, a small batch per transaction with a pause between;
    /// each statement looks at no more than a batch of rows (created_at grows with seq: one
    /// writer assigns both).
    async fn purge_outbox(&self, topic: &str, db: &Db, before: i64) -> anyhow::Result<u64> {
        let Some(passed) = self.passed_by_all(topic).await? else {
            return Ok(0);
        };
        let upto = passed - OUTBOX_POSITIONS;
        if upto <= 0 {
            return Ok(0);
        }
        let mut deleted = 0u64;
        loop {
            let topic = topic.to_owned();
            let count = db
                .write(move |conn| {
                    Box::pin(async move {
                        conn.execute(
                            "DELETE FROM outbox WHERE seq IN (
                                SELECT seq FROM (
                                    SELECT seq, created_at FROM outbox
                                    WHERE seq <= $1 AND topic = $2 ORDER BY seq LIMIT $3)
                                WHERE created_at < $4)",
                            args![upto, &topic, OUTBOX_PURGE_BATCH, before],
                        )
                        .await
                    })
                })
                .await
                .map_err(|error| anyhow::anyhow!("purging the outbox: {error}"))?;
            deleted += count;
            if count < OUTBOX_PURGE_BATCH as u64 {
                return Ok(deleted);
            }
            tokio::time::sleep(OUTBOX_PURGE_PAUSE).await;
        }
    }

    /// The lowest position committed by the groups reading `topic`: None while one of them has
    /// none, or while no group reads it.
    async fn passed_by_all(&self, topic: &str) -> anyhow::Result<Option<i64>> {
        let (readers, committed, lowest): (i64, i64, Option<i64>) = self
            .db
            .read()
            .await?
            .fetch_one(
                "SELECT COUNT(*), COUNT(p.position), MIN(p.position)
                 FROM subscriptions s
                 LEFT JOIN consumer_positions p ON p.group_name = s.group_name
                 WHERE s.topic = $1",
                args![topic],
            )
            .await?;
        Ok(lowest.filter(|_| readers > 0 && committed == readers))
    }

    /// [`Self::purge`] of the log's own table: per topic that groups read, the events at or
    /// below the position all of them passed ([`Self::passed_by_all`], the one rule for both
    /// sources), a batch per transaction. (No ORDER BY: the topic index bounds the candidates,
    /// and a purge with nothing old enough reads nothing more.)
    async fn purge_log(&self, before: i64) -> anyhow::Result<u64> {
        let topics: Vec<(String,)> = self
            .db
            .read()
            .await?
            .fetch_all("SELECT DISTINCT topic FROM subscriptions", &[])
            .await?;
        let mut deleted = 0u64;
        for (topic,) in topics {
            let Some(passed) = self.passed_by_all(&topic).await? else {
                continue;
            };
            loop {
                let topic = topic.clone();
                let count = self
                    .db
                    .write(move |conn| {
                        Box::pin(async move {
                            conn.execute(
                                "DELETE FROM events WHERE position IN (
                                    SELECT position FROM events
                                    WHERE topic = $1 AND position <= $2 AND appended_at < $3
                                    LIMIT $4)",
                                args![&topic, passed, before, PURGE_BATCH],
                            )
                            .await
                        })
                    })
                    .await
                    .map_err(|error| anyhow::anyhow!("purging the event log: {error}"))?;
                deleted += count;
                if count < PURGE_BATCH as u64 {
                    break;
                }
            }
        }
        Ok(deleted)
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
        let mut lag = 0;
        if committed < OUTBOX_POSITIONS {
            lag += count_after(&self.db, "events", "position", committed, topics).await?;
        }
        let names: Vec<String> = topics.iter().map(|topic| (*topic).to_owned()).collect();
        if let Some(outbox) = self.outbox_of(&names).await? {
            let after = (committed - OUTBOX_POSITIONS).max(0);
            lag += count_after(&outbox, "outbox", "seq", after, topics).await?;
        }
        Ok(lag)
    }
}

/// How many rows of `topics` `table` holds after `after` in its `column`.
async fn count_after(
    db: &Db,
    table: &str,
    column: &str,
    after: i64,
    topics: &[&str],
) -> anyhow::Result<i64> {
    let sql = format!(
        "SELECT COUNT(*) FROM {table} WHERE {column} > $1 AND topic IN ({})",
        placeholders(2, topics.len())
    );
    let mut args = vec![Arg::Int(after)];
    args.extend(topics.iter().map(|topic| Arg::Text(topic)));
    let count: Option<i64> = db.read().await?.scalar(&sql, &args).await?;
    Ok(count.unwrap_or(0))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Rows of (position, topic, key, body) as deliveries, their positions raised by `base`.
fn deliveries(rows: Vec<(i64, String, String, String)>, base: i64) -> Vec<Delivery> {
    rows.into_iter()
        .map(|(position, topic, key, body)| Delivery {
            position: position + base,
            topic,
            key,
            body,
        })
        .collect()
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
    /// The database whose outbox is the topics' log, once known.
    outbox: Option<Db>,
    /// The statements that read the topics, made once.
    queries: Queries,
}

/// A subscription's reads: `$1` the position after which to read, then its topics, then the
/// limit.
#[derive(Debug)]
struct Queries {
    /// From the log's own table.
    log: String,
    /// From the publisher's outbox.
    outbox: String,
}

impl Queries {
    fn for_topics(count: usize) -> Self {
        let topics = placeholders(2, count);
        let limit = 2 + count;
        Self {
            log: format!(
                "SELECT position, topic, key, body FROM events
                 WHERE position > $1 AND topic IN ({topics}) ORDER BY position LIMIT ${limit}"
            ),
            outbox: format!(
                "SELECT seq, topic, key, body FROM outbox
                 WHERE seq > $1 AND topic IN ({topics}) ORDER BY seq LIMIT ${limit}"
            ),
        }
    }
}

impl EmbeddedSubscription {
    /// Waits for and returns up to `max` records after the last one returned.
    pub async fn next_batch(&mut self, max: usize) -> anyhow::Result<Vec<Delivery>> {
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
                let batch = self.read(max).await?;
                self.caught_up = batch.len() < max;
                if let Some(last) = batch.last() {
                    self.next_after = last.position;
                    return Ok(batch);
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

    /// Up to `max` records after `next_after`: from the log's own table while there are any
    /// there, then from the topics' outbox once its publisher serves it.
    async fn read(&mut self, max: usize) -> anyhow::Result<Vec<Delivery>> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let args = |after: i64| {
            let mut args = vec![Arg::Int(after)];
            args.extend(self.topics.iter().map(|topic| Arg::Text(topic)));
            args.push(Arg::Int(limit));
            args
        };
        if self.next_after < OUTBOX_POSITIONS {
            let rows = self
                .log
                .db
                .read()
                .await?
                .fetch_all(&self.queries.log, &args(self.next_after))
                .await?;
            if !rows.is_empty() {
                return Ok(deliveries(rows, 0));
            }
            // Nothing (more) in the log: read on in the outbox, once its publisher serves it.
            match self.log.outbox_of(&self.topics).await? {
                Some(outbox) => {
                    self.outbox = Some(outbox);
                    self.next_after = OUTBOX_POSITIONS;
                }
                None => return Ok(Vec::new()),
            }
        }
        if self.outbox.is_none() {
            self.outbox = self.log.outbox_of(&self.topics).await?;
        }
        let Some(outbox) = &self.outbox else {
            return Ok(Vec::new());
        };
        let rows = outbox
            .read()
            .await?
            .fetch_all(
                &self.queries.outbox,
                &args(self.next_after - OUTBOX_POSITIONS),
            )
            .await?;
        Ok(deliveries(rows, OUTBOX_POSITIONS))
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
