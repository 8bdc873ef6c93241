//! The event bus and the two halves of reliable messaging around it.
//!
//! - [`outbox`]: a publisher writes its events into its own database in the same transaction as
//!   its state change; the [`outbox::Relay`] ships them to the bus afterwards. No event without its
//!   state, no state without its event.
//! - [`inbox`]: a consumer records each event id in the same transaction as the event's effect, so
//!   an event delivered twice applies once.
//! - [`Bus`]: where events travel. The embedded default is a durable log in one SQLite file
//!   ([`embedded::EmbeddedLog`]) that every process sharing a data directory can use at once;
//!   distributed mode uses Apache Kafka ([`kafka::KafkaBus`]).
//! - [`consumer`]: the loop that feeds batches of events to a handler and commits its position
//!   only after the handler's transaction has committed.
//! - [`handler`]: how a role applies a batch of events ([`handler::EventHandler`]): its effects
//!   and its inbox rows in one transaction.
//! - [`wiring`]: how a role on the bus is put together (database, relay, consumer, quiet probe).
//! - [`retention`]: inbox rows and log events past the retention window are deleted.
//! - [`quiet`]: a role's unsent events and consumer lag, for a quiesced backup's
//!   `GET /internal/quiet`.
//! - [`schema`]: the outbox and inbox tables, as migrations applied with each role's own.

pub mod consumer;
pub mod embedded;
pub mod handler;
pub mod inbox;
pub mod kafka;
pub mod outbox;
pub mod quiet;
pub mod retention;
pub mod schema;
pub mod wiring;

use std::path::Path;

/// One event on its way to the bus.
#[derive(Debug, Clone)]
pub struct Record {
    /// The event id (unique; publishing the same id twice stores it once).
    pub id: String,
    pub topic: String,
    /// The partition key: the account number.
    pub key: String,
    /// The JSON envelope.
    pub body: String,
}

/// One event read from the bus.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Position in the log; a consumer commits the last position it applied.
    pub position: i64,
    pub topic: String,
    pub key: String,
    pub body: String,
}

impl Delivery {
    /// The typed envelope decoded from the body.
    pub fn envelope(
        &self,
    ) -> Result<onlinebank_core::event::Envelope, onlinebank_core::event::DecodeError> {
        onlinebank_core::event::Envelope::decode(&self.body)
    }

    /// The typed envelope, or None (logged) when it does not decode (bad JSON, unknown type,
    /// bad payload): a consumer skips such a record rather than stall on it.
    pub fn decode(&self) -> Option<onlinebank_core::event::Envelope> {
        match self.envelope() {
            Ok(envelope) => Some(envelope),
            Err(error) => {
                tracing::error!(position = self.position, %error, "skipping undecodable event");
                None
            }
        }
    }
}

/// The event bus a process publishes to and consumes from.
#[derive(Debug, Clone)]
pub enum Bus {
    Embedded(embedded::EmbeddedLog),
    Kafka(kafka::KafkaBus),
}

impl Bus {
    /// Opens the bus named by `url`, or the embedded log under `data_dir` when none is given.
    /// Accepted URLs: `embedded://PATH` (a log file), `kafka://HOST:PORT,...[?partitions=N&
    /// replication=N]` (topics created if missing), or nothing.
    pub async fn open(url: Option<&str>, data_dir: &Path) -> anyhow::Result<Self> {
        match url {
            None | Some("") | Some("embedded") => Ok(Bus::Embedded(
                embedded::EmbeddedLog::open(&data_dir.join("bus.db")).await?,
            )),
            Some(url) if url.starts_with("kafka://") => Ok(Bus::Kafka(
                kafka::KafkaBus::open(url, &onlinebank_core::event::TOPICS).await?,
            )),
            Some(url) => match url.strip_prefix("embedded://") {
                Some(path) => Ok(Bus::Embedded(
                    embedded::EmbeddedLog::open(Path::new(path)).await?,
                )),
                None => anyhow::bail!(
                    "unsupported bus url {url}: expected embedded://PATH or kafka://HOST:PORT"
                ),
            },
        }
    }

    /// Declares that no other process uses this bus (see [`embedded::EmbeddedLog::single_process`]).
    pub fn single_process(self) -> Self {
        match self {
            Bus::Embedded(log) => Bus::Embedded(log.single_process()),
            other => other,
        }
    }

    /// Appends records durably, in order; records whose id is already there are skipped.
    pub async fn publish(&self, records: &[Record]) -> anyhow::Result<()> {
        match self {
            Bus::Embedded(log) => log.publish(records).await,
            Bus::Kafka(kafka) => kafka.publish(records).await,
        }
    }

    /// Joins consumer group `group` on `topics`.
    pub async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> anyhow::Result<consumer::Subscription> {
        match self {
            Bus::Embedded(log) => Ok(consumer::Subscription::Embedded(
                log.subscribe(group, topics).await?,
            )),
            Bus::Kafka(kafka) => Ok(consumer::Subscription::Kafka(
                kafka.subscribe(group, topics).await?,
            )),
        }
    }

    /// Whether the bus answers (for readiness).
    pub async fn ping(&self) -> bool {
        match self {
            Bus::Embedded(log) => log.ping().await,
            Bus::Kafka(kafka) => kafka.ping().await,
        }
    }

    /// How many events the group has not yet committed (for tests, metrics and drains).
    pub async fn lag(&self, group: &str, topics: &[&str]) -> anyhow::Result<i64> {
        match self {
            Bus::Embedded(log) => log.lag(group, topics).await,
            Bus::Kafka(kafka) => kafka.lag(group, topics).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onlinebank_core::event::{AuthCertified, Event, WriteKind};
    use onlinebank_core::ids::{AccountNo, CustomerId};

    fn delivery(body: String) -> Delivery {
        Delivery {
            position: 1,
            topic: onlinebank_core::event::TOPIC_REQUESTS.into(),
            key: "1001".into(),
            body,
        }
    }

    /// A record whose account number or customer id is not valid is skipped (None), like any
    /// other undecodable record: the consumer loop goes on.
    #[test]
    fn records_with_invalid_ids_are_skipped_not_fatal() {
        let envelope = Event::AuthCertified(AuthCertified {
            request_id: onlinebank_core::ids::RequestId::generate(),
            customer_id: CustomerId::parse("c").unwrap(),
            kind: WriteKind::Deposit,
            account_no: AccountNo::parse("1001").unwrap(),
            amount: onlinebank_core::money::Won::from_stored(5).unwrap(),
            to_account_no: None,
        })
        .into_envelope(1);
        let good = serde_json::to_string(&envelope).unwrap();
        assert!(delivery(good).decode().is_some());
        for (field, bad) in [("accountNo", "no such; number"), ("customerId", "a b")] {
            let mut broken = serde_json::to_value(&envelope).unwrap();
            broken["payload"][field] = serde_json::Value::String(bad.into());
            let body = serde_json::to_string(&broken).unwrap();
            assert!(delivery(body).decode().is_none(), "{field}");
        }
    }
}
