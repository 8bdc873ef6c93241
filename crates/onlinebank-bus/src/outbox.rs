//! The transactional outbox and its relay.
//!
//! [`enqueue`] writes an event into the publisher's own database inside the caller's transaction.
//! The [`Relay`] ships committed rows to the bus in batches and deletes them once the bus has them.
//! A crash between the two steps ships a row twice; the bus keeps one copy per event id.

use crate::{Bus, Record};
use onlinebank_core::db::{Db, Engine};
use onlinebank_core::event::{Envelope, Event};
use sqlx::AnyConnection;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Rows shipped per bus transaction.
const RELAY_BATCH: i64 = 512;

/// The tables a publisher needs: the outbox and per-aggregate sequence counters.
fn schema(engine: Engine) -> [String; 2] {
    [
        format!(
            "CREATE TABLE IF NOT EXISTS outbox (
                seq {},
                id TEXT NOT NULL UNIQUE,
                topic TEXT NOT NULL,
                key TEXT NOT NULL,
                body TEXT NOT NULL,
                created_at BIGINT NOT NULL
            )",
            engine.serial_key()
        ),
        "CREATE TABLE IF NOT EXISTS aggregate_sequences (
            aggregate TEXT PRIMARY KEY,
            last BIGINT NOT NULL
        )"
        .to_owned(),
    ]
}

/// PostgreSQL: every statement that inserts into the outbox announces it on the channel of the
/// role's schema (delivered when the transaction commits), so every replica's relay wakes.
const NOTIFY_SCHEMA: [&str; 2] = [
    "CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
         PERFORM pg_notify('onlinebank_outbox_' || current_schema(), '');
         RETURN NULL;
     END
     $$",
    "CREATE OR REPLACE TRIGGER outbox_notify AFTER INSERT ON outbox
     FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()",
];

/// Creates the outbox, sequence and inbox tables if missing.
pub async fn ensure_schema(db: &Db) -> anyhow::Result<()> {
    let notify: &[&str] = match db.engine {
        Engine::Sqlite => &[],
        Engine::Postgres => &NOTIFY_SCHEMA,
    };
    let statements = schema(db.engine);
    for statement in statements
        .iter()
        .map(String::as_str)
        .chain([crate::inbox::SCHEMA])
        .chain(notify.iter().copied())
    {
        // Replicas starting together may race to create a table; the loser just retries.
        if sqlx::query(statement).execute(&db.write).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            sqlx::query(statement).execute(&db.write).await?;
        }
    }
    Ok(())
}

/// Writes `event` to the outbox inside the caller's transaction and returns its envelope.
pub async fn enqueue(conn: &mut AnyConnection, event: Event) -> anyhow::Result<Envelope> {
    let sequence: i64 = sqlx::query_scalar(
        "INSERT INTO aggregate_sequences (aggregate, last) VALUES ($1, 1)
         ON CONFLICT (aggregate) DO UPDATE SET last = aggregate_sequences.last + 1 RETURNING last",
    )
    .bind(event.account_no())
    .fetch_one(&mut *conn)
    .await?;
    let topic = event.topic();
    let envelope = event.into_envelope(sequence)?;
    sqlx::query(
        "INSERT INTO outbox (id, topic, key, body, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(envelope.id.to_string())
    .bind(topic)
    .bind(&envelope.aggregate)
    .bind(serde_json::to_string(&envelope)?)
    .bind(onlinebank_core::time::now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(envelope)
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

/// Ships a publisher's outbox to the bus.
#[derive(Debug, Clone)]
pub struct Relay {
    /// The publisher's name, for metrics and logs.
    name: &'static str,
    db: Db,
    bus: Bus,
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
    pub fn new(name: &'static str, db: Db, bus: Bus) -> Self {
        Self {
            name,
            db,
            bus,
            wake: Arc::new(Notify::new()),
            shipped: Arc::new(AtomicI64::new(0)),
            prune: Arc::new(Notify::new()),
            busy: Arc::default(),
            listening: Arc::default(),
        }
    }

    /// Tells the relay there is something to ship.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Ships one batch; returns how many rows it shipped.
    pub async fn ship_batch(&self) -> anyhow::Result<usize> {
        match self.db.engine {
            Engine::Sqlite => self.ship_batch_sqlite().await,
            Engine::Postgres => self.ship_batch_postgres().await,
        }
    }

    /// PostgreSQL: several replicas of a publisher share its outbox, and sequence numbers may
    /// commit out of order, so a watermark would skip rows. One replica at a time ships (a
    /// transaction-scoped advisory lock per publisher), oldest first, and deletes what it shipped
    /// in the same transaction. A crash after the publish ships those rows again; consumers'
    /// inboxes keep one copy. Events of one aggregate commit in order (their sequence row is
    /// locked), so they are shipped in order.
    async fn ship_batch_postgres(&self) -> anyhow::Result<usize> {
        let mut tx = self.db.write.begin().await?;
        let leader: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1)::BIGINT)")
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
            metrics::gauge!("outbox_backlog", "publisher" => self.name).set(0.0);
            return Ok(0);
        }
        // Exactly the rows this transaction locked and shipped (numbers from our own table): a
        // row committed meanwhile inside their range was not shipped and must stay.
        let seqs: Vec<String> = rows.iter().map(|row| row.0.to_string()).collect();
        let records = into_records(rows);
        self.bus.publish(&records).await?;
        sqlx::query(&format!(
            "DELETE FROM outbox WHERE seq IN ({})",
            seqs.join(",")
        ))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        metrics::counter!("outbox_shipped_total", "publisher" => self.name)
            .increment(records.len() as u64);
        Ok(records.len())
    }

    /// SQLite: writers are serialised, so rows become visible in `seq` order and a watermark
    /// of the highest shipped `seq` is exact; rows behind it are deleted in the background.
    async fn ship_batch_sqlite(&self) -> anyhow::Result<usize> {
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT seq, id, topic, key, body FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(self.shipped.load(Ordering::SeqCst))
        .bind(RELAY_BATCH)
        .fetch_all(&self.db.read)
        .await?;
        let Some(last_seq) = rows.last().map(|row| row.0) else {
            metrics::gauge!("outbox_backlog", "publisher" => self.name).set(0.0);
            return Ok(0);
        };
        let records = into_records(rows);
        self.bus.publish(&records).await?;
        self.shipped.fetch_max(last_seq, Ordering::SeqCst);
        self.prune.notify_one();
        metrics::counter!("outbox_shipped_total", "publisher" => self.name)
            .increment(records.len() as u64);
        if records.len() as i64 >= RELAY_BATCH {
            let backlog: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE seq > $1")
                .bind(self.shipped.load(Ordering::SeqCst))
                .fetch_one(&self.db.read)
                .await?;
            metrics::gauge!("outbox_backlog", "publisher" => self.name).set(backlog as f64);
        }
        Ok(records.len())
    }

    /// Deletes the rows shipped so far. Through group commit, so the delete rides along with
    /// other writes; a crash before it only ships those rows again (the bus keeps one copy).
    pub async fn prune_shipped(&self) -> anyhow::Result<()> {
        if self.db.engine == Engine::Postgres {
            return Ok(()); // shipped rows are deleted as they are shipped
        }
        let shipped = self.shipped.load(Ordering::SeqCst);
        if shipped == 0 {
            return Ok(());
        }
        self.db
            .group
            .run(move |mut conn| async move {
                let result = sqlx::query("DELETE FROM outbox WHERE seq <= $1")
                    .bind(shipped)
                    .execute(&mut *conn)
                    .await;
                (conn, result)
            })
            .await
            .map_err(|error| anyhow::anyhow!("deleting shipped outbox rows: {error}"))?;
        Ok(())
    }

    /// Ships until the outbox is empty.
    pub async fn flush(&self) -> anyhow::Result<()> {
        while self.ship_batch().await? > 0 {}
        Ok(())
    }

    /// Runs until `shutdown`, then flushes what is left.
    pub async fn run(self, shutdown: CancellationToken) {
        let pruning = async {
            loop {
                tokio::select! {
                    _ = self.prune.notified() => {}
                    _ = shutdown.cancelled() => return,
                }
                if let Err(error) = self.prune_shipped().await {
                    tracing::warn!(error = %format!("{error:#}"), "outbox prune failed");
                }
            }
        };
        let listening = async {
            if self.db.engine == Engine::Postgres {
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

    async fn ship_until(&self, shutdown: &CancellationToken) {
        loop {
            match self.ship_batch().await {
                Ok(shipped) if shipped as i64 >= RELAY_BATCH => continue,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "outbox relay failed, retrying");
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
    use onlinebank_core::event::{AuthCertified, WriteKind};
    use uuid::Uuid;

    #[tokio::test]
    async fn relay_ships_committed_events_once_with_sequences_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("svc.db").display().to_string(), "svc")
            .await
            .unwrap();
        relay_behaviour(db, dir).await;
    }

    #[tokio::test]
    async fn relay_ships_committed_events_once_with_sequences_on_postgres() {
        let url = onlinebank_core::db::testing::fresh_postgres("relay")
            .await
            .unwrap();
        let db = Db::open(&url, "svc").await.unwrap();
        relay_behaviour(db, tempfile::tempdir().unwrap()).await;
    }

    fn deposit(account: &str, amount: i64) -> Event {
        Event::AuthCertified(AuthCertified {
            request_id: Uuid::now_v7(),
            customer_id: "c".into(),
            kind: WriteKind::Deposit,
            account_no: account.into(),
            amount,
        })
    }

    /// Two relays of one publisher on PostgreSQL (two replicas) while writers enqueue: every
    /// event reaches the bus, and each aggregate's events arrive in sequence order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_postgres_relays_ship_everything_in_per_aggregate_order() {
        let url = onlinebank_core::db::testing::fresh_postgres("relays")
            .await
            .unwrap();
        let db = Db::open(&url, "svc").await.unwrap();
        ensure_schema(&db).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bus = Bus::open(None, dir.path()).await.unwrap();
        let relays = [
            Relay::new("svc", Db::open(&url, "svc").await.unwrap(), bus.clone()),
            Relay::new("svc", Db::open(&url, "svc").await.unwrap(), bus.clone()),
        ];
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let db = db.clone();
                tokio::spawn(async move {
                    for i in 0..50 {
                        let mut tx = db.begin_write().await.unwrap();
                        enqueue(&mut tx, deposit(&format!("acc{}", (w + i) % 5), 1))
                            .await
                            .unwrap();
                        tx.commit().await.unwrap();
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

    async fn relay_behaviour(db: Db, dir: tempfile::TempDir) {
        ensure_schema(&db).await.unwrap();
        let bus = Bus::open(None, dir.path()).await.unwrap();
        let relay = Relay::new("test", db.clone(), bus.clone());
        let event = |amount| deposit("1001", amount);
        let mut tx = db.begin_write().await.unwrap();
        let first = enqueue(&mut tx, event(1)).await.unwrap();
        let second = enqueue(&mut tx, event(2)).await.unwrap();
        tx.commit().await.unwrap();
        // A rolled-back transaction publishes nothing.
        let mut tx = db.begin_write().await.unwrap();
        enqueue(&mut tx, event(3)).await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!((first.sequence, second.sequence), (1, 2));

        assert_eq!(relay.ship_batch().await.unwrap(), 2);
        assert_eq!(relay.ship_batch().await.unwrap(), 0);
        relay.prune_shipped().await.unwrap();
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
            .fetch_one(&db.read)
            .await
            .unwrap();
        assert_eq!(left, 0, "shipped rows are pruned");
        let mut sub = bus
            .subscribe("g", &[onlinebank_core::event::TOPIC_REQUESTS])
            .await
            .unwrap();
        let batch = sub.next_batch(10).await.unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].envelope().unwrap().id, first.id);
        assert_eq!(batch[1].envelope().unwrap().id, second.id);
    }
}
