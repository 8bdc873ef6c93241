//! The transactional outbox and its relay.
//!
//! [`enqueue`] writes an event into the publisher's own database inside the caller's transaction.
//! The [`Relay`] ships committed rows to the bus in batches and deletes them once the bus has them.
//! A crash between the two steps ships a row twice; the bus keeps one copy per event id. On the
//! embedded bus a SQLite outbox is not shipped at all: it is served as its topics' log (see
//! [`crate::embedded`]), and the relay only wakes the consumers.

use crate::{Bus, Record};
use onlinebank_core::args;
use onlinebank_core::batch_row;
use onlinebank_core::db::batch::BatchRow;
use onlinebank_core::db::{json_rows, Conn, Db, Engine};
use onlinebank_core::event::{Envelope, Event};
use onlinebank_core::log_limit::LogLimit;
use onlinebank_core::trace::{CallContext, EventCall};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Rows shipped per bus transaction.
const RELAY_BATCH: i64 = 512;
/// SQLite: how often shipped rows are deleted at most.
const PRUNE_EVERY: Duration = Duration::from_millis(100);

/// An event to publish, with the customer call that caused it (see [`Envelope::call`]).
pub struct Outgoing {
    pub event: Event,
    pub call: Option<EventCall>,
}

impl Outgoing {
    /// `event`, caused by the call this task is serving (see [`CallContext::current`]).
    pub fn of_current_call(event: Event) -> Self {
        Self {
            event,
            call: CallContext::current().map(|context| context.publishing()),
        }
    }
}

/// An event no customer call caused (or whose call is not known).
impl From<Event> for Outgoing {
    fn from(event: Event) -> Self {
        Self { event, call: None }
    }
}

/// Writes `event` to the outbox inside the caller's transaction and returns its envelope.
pub async fn enqueue(conn: &mut Conn, event: impl Into<Outgoing>) -> anyhow::Result<Envelope> {
    enqueue_all(conn, vec![event])
        .await?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("the outbox took no event"))
}

batch_row! {
    /// An aggregate's sequence moved by [`enqueue_all`]: `taken` numbers for its events.
    struct SequenceMove<'a> {
        aggregate: &'a str => Text,
        taken: i64 => BigInt,
    }
}

batch_row! {
    /// An event written to the outbox by [`enqueue_all`].
    struct OutboxEntry {
        id: uuid::Uuid => Text,
        topic: &'static str => Text,
        key: String => Text,
        body: String => Text,
    }
}

/// Writes `events` to the outbox, in their order, inside the caller's transaction and returns
/// their envelopes: two statements whatever their number (each aggregate's sequence moved once
/// by its count, then every row), see [`onlinebank_core::db::Engine::json_rows`].
pub async fn enqueue_all(
    conn: &mut Conn,
    events: Vec<impl Into<Outgoing>>,
) -> anyhow::Result<Vec<Envelope>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let events: Vec<Outgoing> = events.into_iter().map(Into::into).collect();
    let mut moves: Vec<SequenceMove> = Vec::new();
    for Outgoing { event, .. } in &events {
        let aggregate = event.account_no();
        match moves.iter_mut().find(|kept| kept.aggregate == aggregate) {
            Some(kept) => kept.taken += 1,
            None => moves.push(SequenceMove {
                aggregate,
                taken: 1,
            }),
        }
    }
    let asked = moves.len();
    let lasts: Vec<(String, i64)> = conn
        .fetch_all(
            &format!(
                "INSERT INTO aggregate_sequences (aggregate, last)
                 SELECT {}, {} FROM {} WHERE true
                 ON CONFLICT (aggregate) DO UPDATE SET last = aggregate_sequences.last + excluded.last
                 RETURNING aggregate, last",
                const { SequenceMove::field("aggregate") }.read(),
                const { SequenceMove::field("taken") }.read(),
                conn.engine().json_rows("$1")
            ),
            args![json_rows(&moves)?.as_str()],
        )
        .await?;
    if lasts.len() != asked {
        anyhow::bail!("the outbox moved {} of {asked} sequences", lasts.len());
    }
    // The next sequence of each aggregate: its last minus what this batch takes, plus one.
    let mut next: std::collections::HashMap<String, i64> = lasts.into_iter().collect();
    for moved in &moves {
        if let Some(last) = next.get_mut(moved.aggregate) {
            *last -= moved.taken - 1;
        }
    }
    let mut envelopes = Vec::with_capacity(events.len());
    let mut outbox = Vec::with_capacity(events.len());
    for Outgoing { event, call } in events {
        let sequence = next
            .get_mut(event.account_no())
            .ok_or_else(|| anyhow::anyhow!("no sequence for {}", event.account_no()))?;
        let topic = event.topic();
        let envelope = Envelope {
            call,
            ..event.into_envelope(*sequence)
        };
        *sequence += 1;
        let body = serde_json::to_string(&envelope)?;
        outbox.push(OutboxEntry {
            id: envelope.id,
            topic,
            key: envelope.aggregate.clone(),
            body,
        });
        envelopes.push(envelope);
    }
    // `ORDER BY key`: the rows take their `seq` in the events' order.
    conn.execute(
        &format!(
            "INSERT INTO outbox ({}, created_at)
             SELECT {}, $1 FROM {} WHERE true ORDER BY rows.key",
            OutboxEntry::columns(),
            OutboxEntry::select(),
            conn.engine().json_rows("$2")
        ),
        args![
            onlinebank_core::time::now_ms(),
            json_rows(&outbox)?.as_str()
        ],
    )
    .await?;
    Ok(envelopes)
}

/// An outbox row: seq, id, topic, key, body.
type OutboxRow = (i64, String, String, String, String);

fn into_records(rows: Vec<OutboxRow>) -> Vec<Record> {
    rows.into_iter()
        .map(|(_, id, topic, key, body)| Record {
            id,
            topic,
            key,
            body,
        })
        .collect()
}

/// How a publisher's events reach their consumers, by its database and the bus (the table
/// "Where an event goes" of docs/architecture.md): decided once, in [`Route::of`].
#[derive(Debug, Clone)]
enum Route {
    /// A SQLite outbox on the embedded log: the log reads it where it is; nothing is shipped.
    Served(crate::embedded::EmbeddedLog),
    /// A SQLite outbox (to Kafka): one writer assigns `seq` in commit order, so rows past a
    /// watermark are shipped and deleted in the background.
    Watermark,
    /// A PostgreSQL outbox (to either bus): `seq` may commit out of order, so one replica at a
    /// time ships the oldest rows and deletes them in the same transaction, woken by `NOTIFY`.
    Leader,
}

impl Route {
    fn of(db: &Db, bus: &Bus) -> Self {
        match (db.engine, bus) {
            (Engine::Sqlite, Bus::Embedded(log)) => Route::Served(log.clone()),
            (Engine::Sqlite, Bus::Kafka(_)) => Route::Watermark,
            (Engine::Postgres, _) => Route::Leader,
        }
    }
}

/// Ships a publisher's outbox to the bus.
#[derive(Debug, Clone)]
pub struct Relay {
    /// The publisher's name, for metrics and logs.
    name: &'static str,
    /// The topics its events go to.
    topics: &'static [&'static str],
    db: Db,
    bus: Bus,
    route: Route,
    /// Rung after a transaction that enqueued events commits.
    wake: Arc<Notify>,
    /// The highest outbox row this relay has shipped; rows up to it are deleted in the
    /// background, so shipping never waits for the delete's commit.
    shipped: Arc<AtomicI64>,
    /// Rung after a batch was shipped: there are rows to delete.
    prune: Arc<Notify>,
    /// PostgreSQL: the last attempt found another replica shipping.
    busy: Arc<std::sync::atomic::AtomicBool>,
    /// PostgreSQL: the outbox notifications are being received.
    listening: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    pub fn new(name: &'static str, topics: &'static [&'static str], db: Db, bus: Bus) -> Self {
        Self {
            name,
            topics,
            route: Route::of(&db, &bus),
            db,
            bus,
            wake: Arc::new(Notify::new()),
            shipped: Arc::new(AtomicI64::new(0)),
            prune: Arc::new(Notify::new()),
            busy: Arc::default(),
            listening: Arc::default(),
        }
    }

    /// The embedded log that reads this SQLite outbox where it is (nothing to ship), if so.
    fn served_by(&self) -> Option<&crate::embedded::EmbeddedLog> {
        match &self.route {
            Route::Served(log) => Some(log),
            Route::Watermark | Route::Leader => None,
        }
    }

    /// Tells the relay there is something to ship (or, for a served outbox, the consumers in
    /// this process that there is something to read).
    pub fn wake(&self) {
        match self.served_by() {
            Some(log) => log.appended(self.topics),
            None => self.wake.notify_one(),
        }
    }

    /// Ships one batch; returns how many rows it shipped.
    pub async fn ship_batch(&self) -> anyhow::Result<usize> {
        match self.route {
            Route::Served(_) => Ok(0),
            Route::Watermark => self.ship_past_watermark().await,
            Route::Leader => self.ship_as_leader().await,
        }
    }

    /// PostgreSQL: several replicas of a publisher share its outbox, and sequence numbers may
    /// commit out of order, so a watermark would skip rows. One replica at a time ships (a
    /// transaction-scoped advisory lock per publisher), oldest first, and deletes what it shipped
    /// in the same transaction. A crash after the publish ships those rows again; consumers'
    /// inboxes keep one copy. Events of one aggregate commit in order (their sequence row is
    /// locked), so they are shipped in order.
    async fn ship_as_leader(&self) -> anyhow::Result<usize> {
        let Some(pool) = self.db.postgres_writer() else {
            return Ok(0);
        };
        let mut tx = pool.begin().await?;
        // The transaction only deletes rows the bus already has: it commits without waiting for
        // its WAL flush (`synchronous_commit` off for it alone, set in the same round trip as the
        // lock). A PostgreSQL crash may undo the delete; the rows are then shipped again, and the
        // consumers' inboxes skip them, as after a relay crash.
        let leader: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtext($1)::BIGINT)
             FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relay_commit",
        )
        .bind(format!("onlinebank outbox {}", self.name))
        .fetch_one(&mut *tx)
        .await?;
        if !leader {
            // Another replica is shipping right now; it may have selected its rows before ours
            // committed, so look again shortly.
            self.busy.store(true, Ordering::SeqCst);
            return Ok(0);
        }
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT seq, id, topic, key, body FROM outbox ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(RELAY_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            metrics::gauge!("onlinebank_outbox_backlog", "publisher" => self.name).set(0.0);
            return Ok(0);
        }
        // Exactly the rows this transaction locked and shipped (numbers from our own table): a
        // row committed meanwhile inside their range was not shipped and must stay.
        let seqs: Vec<String> = rows.iter().map(|row| row.0.to_string()).collect();
        let records = into_records(rows);
        self.bus.publish(&records).await?;
        // The list holds numbers from our own table, never user input.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM outbox WHERE seq IN ({})",
            seqs.join(",")
        )))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        metrics::counter!("onlinebank_outbox_shipped_total", "publisher" => self.name)
            .increment(records.len() as u64);
        Ok(records.len())
    }

    /// SQLite: writers are serialised, so rows become visible in `seq` order and a watermark
    /// of the highest shipped `seq` is exact; rows behind it are deleted in the background.
    async fn ship_past_watermark(&self) -> anyhow::Result<usize> {
        let rows: Vec<OutboxRow> = self
            .db
            .read()
            .await?
            .fetch_all(
                "SELECT seq, id, topic, key, body FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
                args![self.shipped.load(Ordering::SeqCst), RELAY_BATCH],
            )
            .await?;
        let Some(last_seq) = rows.last().map(|row| row.0) else {
            metrics::gauge!("onlinebank_outbox_backlog", "publisher" => self.name).set(0.0);
            return Ok(0);
        };
        let records = into_records(rows);
        self.bus.publish(&records).await?;
        self.shipped.fetch_max(last_seq, Ordering::SeqCst);
        self.prune.notify_one();
        metrics::counter!("onlinebank_outbox_shipped_total", "publisher" => self.name)
            .increment(records.len() as u64);
        if records.len() as i64 >= RELAY_BATCH {
            let backlog: Option<i64> = self
                .db
                .read()
                .await?
                .scalar(
                    "SELECT COUNT(*) FROM outbox WHERE seq > $1",
                    args![self.shipped.load(Ordering::SeqCst)],
                )
                .await?;
            metrics::gauge!("onlinebank_outbox_backlog", "publisher" => self.name)
                .set(backlog.unwrap_or(0) as f64);
        }
        Ok(records.len())
    }

    /// Deletes the rows shipped so far. Through group commit, so the delete rides along with
    /// other writes; a crash before it only ships those rows again (the bus keeps one copy).
    pub async fn prune_shipped(&self) -> anyhow::Result<()> {
        if !matches!(self.route, Route::Watermark) {
            // Shipped rows are deleted as they are shipped; a served outbox's by retention.
            return Ok(());
        }
        let shipped = self.shipped.load(Ordering::SeqCst);
        if shipped == 0 {
            return Ok(());
        }
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    conn.execute("DELETE FROM outbox WHERE seq <= $1", args![shipped])
                        .await
                })
            })
            .await
            .map_err(|error| anyhow::anyhow!("deleting shipped outbox rows: {error}"))?;
        Ok(())
    }

    /// Events committed to the outbox and not yet on the bus: on PostgreSQL every row (shipped
    /// rows go in the shipping transaction), on SQLite the rows past what this relay shipped
    /// (shipped rows are deleted later); none when the embedded log serves the outbox itself.
    pub async fn unsent(&self) -> anyhow::Result<i64> {
        let shipped = match self.route {
            Route::Served(_) => return Ok(0),
            Route::Watermark => self.shipped.load(Ordering::SeqCst),
            Route::Leader => 0,
        };
        let unsent: Option<i64> = self
            .db
            .read()
            .await?
            .scalar(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM outbox WHERE seq > $1",
                args![shipped],
            )
            .await?;
        Ok(unsent.unwrap_or(0))
    }

    /// Ships until the outbox is empty.
    pub async fn flush(&self) -> anyhow::Result<()> {
        while self.ship_batch().await? > 0 {}
        Ok(())
    }

    /// Runs until `shutdown`, then flushes what is left.
    pub async fn run(self, shutdown: CancellationToken) {
        if let Some(log) = self.served_by() {
            self.serve(log, &shutdown).await;
            return;
        }
        let pruning = async {
            let mut log = LogLimit::new(
                "outbox prune failed",
                "outbox prune works again",
                &*self.db.schema,
            );
            loop {
                tokio::select! {
                    _ = self.prune.notified() => {}
                    _ = shutdown.cancelled() => return,
                }
                let pruned = self.prune_shipped().await;
                let _ = log.note(pruned);
                // Shipped rows are only dead weight: deleting them a few times a second is
                // enough, and saves a write per shipped batch.
                tokio::select! {
                    _ = tokio::time::sleep(PRUNE_EVERY) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        let listening = async {
            if matches!(self.route, Route::Leader) {
                self.listen(&shutdown).await;
            }
        };
        tokio::join!(self.ship_until(&shutdown), pruning, listening);
        if let Err(error) = self.flush().await {
            tracing::warn!(error = %format!("{error:#}"), "outbox relay could not flush on shutdown");
        }
        if let Err(error) = self.prune_shipped().await {
            tracing::warn!(error = %format!("{error:#}"), "outbox prune failed on shutdown");
        }
    }

    /// PostgreSQL: wakes this relay whenever any replica's transaction added outbox rows (the
    /// outbox trigger's notification). Without it (connection lost) the relay falls back to
    /// looking every 250 ms, and soon after finding another replica shipping.
    async fn listen(&self, shutdown: &CancellationToken) {
        let channel = format!("onlinebank_outbox_{}", self.db.schema);
        onlinebank_core::db::listen(
            &self.db.url,
            &channel,
            shutdown,
            |listening| {
                self.listening.store(listening, Ordering::SeqCst);
                if listening {
                    // Rows may have arrived before the listener was in place.
                    self.wake();
                }
            },
            |_| self.wake(),
        )
        .await;
    }

    /// How long the relay waits before looking again unless woken: after finding another
    /// replica shipping, soon (unless notifications will wake it); else 250 ms, for rows that a
    /// crashed replica left behind.
    fn next_look(&self) -> Duration {
        let busy = self.busy.swap(false, Ordering::SeqCst);
        if busy && !self.listening.load(Ordering::SeqCst) {
            Duration::from_millis(15)
        } else {
            Duration::from_millis(250)
        }
    }

    /// Makes the outbox its topics' log on the embedded bus (retrying until it is recorded).
    async fn serve(&self, log: &crate::embedded::EmbeddedLog, shutdown: &CancellationToken) {
        let mut failures = LogLimit::new(
            "serving the outbox failed, retrying",
            "serving the outbox",
            &*self.db.schema,
        );
        while let Err(error) = log.serve_outbox(self.topics, &self.db).await {
            failures.failed(&error);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
        failures.succeeded();
    }

    async fn ship_until(&self, shutdown: &CancellationToken) {
        let mut log = LogLimit::new(
            "outbox relay failed, retrying",
            "outbox relay ships again",
            &*self.db.schema,
        );
        loop {
            match self.ship_batch().await {
                Ok(shipped) if shipped as i64 >= RELAY_BATCH => {
                    log.succeeded();
                    continue;
                }
                Ok(_) => log.succeeded(),
                Err(error) => {
                    log.failed(&error);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.next_look()) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onlinebank_core::db::GroupError;
    use onlinebank_core::event::{AuthCertified, WriteKind};
    use uuid::Uuid;

    /// On the embedded bus a SQLite outbox is its topic's log: nothing is shipped, consumers
    /// (in this process, or in another one that finds the file through the log) read the rows
    /// where they are, after what the log itself still held, and retention deletes the rows
    /// once every reader has passed them.
    #[tokio::test]
    async fn a_sqlite_outbox_is_read_where_it_is_on_the_embedded_bus() {
        use crate::embedded::OUTBOX_POSITIONS;
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir).await;
        let bus = Bus::open(None, dir.path()).await.unwrap();
        // An event the log itself holds (shipped before outboxes were served): read first.
        bus.publish(&[crate::Record {
            id: Uuid::now_v7().to_string(),
            topic: onlinebank_core::event::TOPIC_REQUESTS.into(),
            key: "1001".into(),
            body: "{}".into(),
        }])
        .await
        .unwrap();
        let (first, second) = enqueue_two(&db).await;
        let relay = Relay::new(
            "svc",
            &[onlinebank_core::event::TOPIC_REQUESTS],
            db.clone(),
            bus.clone(),
        );
        assert_eq!(relay.ship_batch().await.unwrap(), 0, "nothing to ship");
        let shutdown = CancellationToken::new();
        let serving = tokio::spawn(relay.clone().run(shutdown.clone()));

        let mut sub = bus
            .subscribe("g", &[onlinebank_core::event::TOPIC_REQUESTS])
            .await
            .unwrap();
        let logged = sub.next_batch(10).await.unwrap();
        assert_eq!(logged.len(), 1);
        assert!(logged[0].position < OUTBOX_POSITIONS);
        let served = sub.next_batch(10).await.unwrap();
        let ids: Vec<_> = served.iter().map(|d| d.envelope().unwrap().id).collect();
        assert_eq!(ids, vec![first.id, second.id]);
        assert!(served[0].position > OUTBOX_POSITIONS);
        assert_eq!(
            bus.lag("g", &[onlinebank_core::event::TOPIC_REQUESTS])
                .await
                .unwrap(),
            3
        );

        // Another process sharing the data directory finds the outbox through the log.
        let other = Bus::open(None, dir.path()).await.unwrap();
        let mut elsewhere = other
            .subscribe("h", &[onlinebank_core::event::TOPIC_REQUESTS])
            .await
            .unwrap();
        let mut read = Vec::new();
        while read.len() < 3 {
            read.extend(elsewhere.next_batch(10).await.unwrap());
        }
        assert_eq!(read[2].envelope().unwrap().id, second.id);

        // Retention waits for every group reading the topic, then deletes what all passed.
        let later = onlinebank_core::time::now_ms() + 1_000;
        let Bus::Embedded(log) = &bus else {
            unreachable!("the default bus is the embedded log")
        };
        sub.commit(served[1].position).await.unwrap();
        assert_eq!(log.purge(later).await.unwrap(), 0, "h has no position yet");
        elsewhere.commit(read[1].position).await.unwrap();
        assert_eq!(
            log.purge(later).await.unwrap(),
            2,
            "the logged event and the first row"
        );
        assert_eq!(outbox_rows(&db).await, 1);
        // New rows wake this process's readers at once.
        let third = db
            .write(|conn| Box::pin(async move { enqueue(conn, deposit("1001", 3)).await }))
            .await
            .unwrap();
        relay.wake();
        let batch = sub.next_batch(10).await.unwrap();
        assert_eq!(batch[0].envelope().unwrap().id, third.id);
        shutdown.cancel();
        serving.await.unwrap();
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (ONLINEBANK_TEST_POSTGRES): ./.ci/run runs it"]
    async fn relay_ships_committed_events_once_with_sequences_on_postgres() {
        let db = onlinebank_core::db::testing::postgres_db("relay", "svc").await;
        let dir = tempfile::tempdir().unwrap();
        relay_behaviour(db, Bus::open(None, dir.path()).await.unwrap()).await;
    }

    /// A SQLite outbox on Kafka is shipped (and its shipped rows deleted).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Kafka (ONLINEBANK_TEST_KAFKA): ./.ci/run runs it"]
    async fn relay_ships_committed_events_once_with_sequences_from_sqlite_to_kafka() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir).await;
        let url = crate::kafka::tests::kafka_url("relay");
        relay_behaviour(db, Bus::open(Some(&url), dir.path()).await.unwrap()).await;
    }

    /// A batch of events in one `enqueue_all`: each aggregate's sequence goes on from its last
    /// one, in the events' order, and the outbox holds the rows in that order.
    #[tokio::test]
    async fn a_batch_takes_each_aggregates_next_sequences_in_order_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        batch_behaviour(sqlite(&dir).await).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (ONLINEBANK_TEST_POSTGRES): ./.ci/run runs it"]
    async fn a_batch_takes_each_aggregates_next_sequences_in_order_on_postgres() {
        batch_behaviour(onlinebank_core::db::testing::postgres_db("batch", "svc").await).await;
    }

    async fn batch_behaviour(db: Db) {
        let (_, second) = enqueue_two(&db).await;
        assert_eq!((second.aggregate.as_str(), second.sequence), ("1001", 2));
        let accounts = ["2002", "1001", "2002", "3003", "1001", "2002"];
        let envelopes = db
            .write(move |conn| {
                Box::pin(async move {
                    let events = accounts.iter().map(|no| deposit(no, 5)).collect();
                    enqueue_all(conn, events).await
                })
            })
            .await
            .unwrap();
        let numbered: Vec<(&str, i64)> = envelopes
            .iter()
            .map(|envelope| (envelope.aggregate.as_str(), envelope.sequence))
            .collect();
        assert_eq!(
            numbered,
            [
                ("2002", 1),
                ("1001", 3),
                ("2002", 2),
                ("3003", 1),
                ("1001", 4),
                ("2002", 3)
            ]
        );
        let stored: Vec<(String,)> = db
            .read()
            .await
            .unwrap()
            .fetch_all("SELECT id FROM outbox ORDER BY seq", &[])
            .await
            .unwrap();
        let stored: Vec<String> = stored.into_iter().map(|(id,)| id).collect();
        let mut expected = vec![second.id.to_string()];
        expected.extend(envelopes.iter().map(|envelope| envelope.id.to_string()));
        assert_eq!(stored[stored.len() - expected.len()..], expected[..]);
    }

    /// Events written by [`enqueue_all`] read back by a plain SELECT: each outbox row holds
    /// its envelope (text with quotes and unicode intact) and each aggregate's sequence ends at
    /// its last event.
    async fn rows_round_trip(db: Db) {
        crate::schema::bus_only(&db).await.unwrap();
        let events = vec![
            deposit("1001", 1),
            Event::AuthCertified(AuthCertified {
                request_id: onlinebank_core::ids::RequestId::generate(),
                customer_id: onlinebank_core::ids::CustomerId::parse("o'\"né\"@例え.jp").unwrap(),
                kind: WriteKind::Withdraw,
                account_no: onlinebank_core::ids::AccountNo::parse("110-000000002").unwrap(),
                amount: onlinebank_core::money::Won::try_from(7).unwrap(),
                to_account_no: None,
            }),
            deposit("1001", 2),
        ];
        let envelopes = db
            .write(move |conn| Box::pin(async move { enqueue_all(conn, events).await }))
            .await
            .unwrap();
        let mut conn = db.read().await.unwrap();
        let rows: Vec<(String, String, String, String)> = conn
            .fetch_all("SELECT id, topic, key, body FROM outbox ORDER BY seq", &[])
            .await
            .unwrap();
        let sent: Vec<(String, String, String, String)> = envelopes
            .iter()
            .map(|envelope| {
                (
                    envelope.id.to_string(),
                    onlinebank_core::event::TOPIC_REQUESTS.to_owned(),
                    envelope.aggregate.clone(),
                    serde_json::to_string(envelope).unwrap(),
                )
            })
            .collect();
        assert_eq!(rows, sent);
        assert!(rows[1].3.contains("o'\\\"né\\\"@例え.jp"), "{}", rows[1].3);
        let sequences: Vec<(String, i64)> = conn
            .fetch_all(
                "SELECT aggregate, last FROM aggregate_sequences ORDER BY aggregate",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            sequences,
            [("1001".to_owned(), 2), ("110-000000002".to_owned(), 1)]
        );
    }

    #[tokio::test]
    async fn rows_round_trip_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        rows_round_trip(sqlite(&dir).await).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (ONLINEBANK_TEST_POSTGRES): ./.ci/run runs it"]
    async fn rows_round_trip_on_postgres() {
        rows_round_trip(onlinebank_core::db::testing::postgres_db("outbox", "svc").await).await;
    }

    async fn sqlite(dir: &tempfile::TempDir) -> Db {
        Db::open(&dir.path().join("svc.db").display().to_string(), "svc")
            .await
            .unwrap()
    }

    async fn outbox_rows(db: &Db) -> i64 {
        db.read()
            .await
            .unwrap()
            .scalar("SELECT COUNT(*) FROM outbox", &[])
            .await
            .unwrap()
            .unwrap_or(0)
    }

    fn deposit(account: &str, amount: i64) -> Event {
        Event::AuthCertified(AuthCertified {
            request_id: onlinebank_core::ids::RequestId::generate(),
            customer_id: onlinebank_core::ids::CustomerId::parse("c").unwrap(),
            kind: WriteKind::Deposit,
            account_no: onlinebank_core::ids::AccountNo::parse(account).unwrap(),
            amount: onlinebank_core::money::Won::from_stored(amount).unwrap(),
            to_account_no: None,
        })
    }

    /// Two relays of one publisher on PostgreSQL (two replicas) while writers enqueue: every
    /// event reaches the bus, and each aggregate's events arrive in sequence order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL (ONLINEBANK_TEST_POSTGRES): ./.ci/run runs it"]
    async fn two_postgres_relays_ship_everything_in_per_aggregate_order() {
        let db = onlinebank_core::db::testing::postgres_db("relays", "svc").await;
        crate::schema::bus_only(&db).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bus = Bus::open(None, dir.path()).await.unwrap();
        let relays = [
            Relay::new(
                "svc",
                &[onlinebank_core::event::TOPIC_REQUESTS],
                Db::open(&db.url, "svc").await.unwrap(),
                bus.clone(),
            ),
            Relay::new(
                "svc",
                &[onlinebank_core::event::TOPIC_REQUESTS],
                Db::open(&db.url, "svc").await.unwrap(),
                bus.clone(),
            ),
        ];
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let db = db.clone();
                tokio::spawn(async move {
                    for i in 0..50 {
                        let event = deposit(&format!("acc{}", (w + i) % 5), 1);
                        db.write(move |conn| Box::pin(async move { enqueue(conn, event).await }))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        let shipping: Vec<_> = relays
            .iter()
            .cloned()
            .map(|relay| {
                tokio::spawn(async move {
                    let mut shipped = 0;
                    for _ in 0..400 {
                        shipped += relay.ship_batch().await.unwrap();
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    shipped
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        let mut shipped = 0;
        for relay in shipping {
            shipped += relay.await.unwrap();
        }
        shipped += relays[0].ship_batch().await.unwrap();
        assert_eq!(shipped, 200, "every row shipped once");
        let mut sub = bus
            .subscribe("g", &[onlinebank_core::event::TOPIC_REQUESTS])
            .await
            .unwrap();
        let mut last: std::collections::HashMap<String, i64> = Default::default();
        let mut seen = 0;
        while seen < 200 {
            for delivery in sub.next_batch(500).await.unwrap() {
                let envelope = delivery.envelope().unwrap();
                let before = last.insert(envelope.aggregate.clone(), envelope.sequence);
                assert_eq!(
                    before.unwrap_or(0) + 1,
                    envelope.sequence,
                    "{} out of order",
                    envelope.aggregate
                );
                seen += 1;
            }
        }
    }

    /// Two events enqueued in one transaction (sequences 1 and 2), and a third in a
    /// transaction that rolls back.
    async fn enqueue_two(db: &Db) -> (Envelope, Envelope) {
        crate::schema::bus_only(db).await.unwrap();
        let event = |amount| deposit("1001", amount);
        let (first, second) = db
            .write(move |conn| {
                Box::pin(async move {
                    let first = enqueue(conn, event(1)).await?;
                    let second = enqueue(conn, event(2)).await?;
                    anyhow::Ok((first, second))
                })
            })
            .await
            .unwrap();
        // A rolled-back transaction publishes nothing.
        let rolled_back = db
            .write(move |conn| {
                Box::pin(async move {
                    let result: anyhow::Result<()> = match enqueue(conn, event(3)).await {
                        Ok(_) => Err(anyhow::anyhow!("roll back")),
                        Err(error) => Err(error),
                    };
                    result
                })
            })
            .await;
        assert!(matches!(rolled_back, Err(GroupError::Job(_))));
        assert_eq!((first.sequence, second.sequence), (1, 2));
        (first, second)
    }

    async fn relay_behaviour(db: Db, bus: Bus) {
        let (first, second) = enqueue_two(&db).await;
        let relay = Relay::new(
            "test",
            &[onlinebank_core::event::TOPIC_REQUESTS],
            db.clone(),
            bus.clone(),
        );
        assert_eq!(relay.ship_batch().await.unwrap(), 2);
        assert_eq!(relay.ship_batch().await.unwrap(), 0);
        relay.prune_shipped().await.unwrap();
        assert_eq!(outbox_rows(&db).await, 0, "shipped rows are pruned");
        let mut sub = bus
            .subscribe("g", &[onlinebank_core::event::TOPIC_REQUESTS])
            .await
            .unwrap();
        let mut batch = Vec::new();
        while batch.len() < 2 {
            let more = tokio::time::timeout(Duration::from_secs(30), sub.next_batch(10))
                .await
                .expect("the shipped events arrive")
                .unwrap();
            batch.extend(more);
        }
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].envelope().unwrap().id, first.id);
        assert_eq!(batch[1].envelope().unwrap().id, second.id);
    }
}
