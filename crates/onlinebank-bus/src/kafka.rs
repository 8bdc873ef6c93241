//! The bus on Apache Kafka, through rdkafka (librdkafka, built from source).
//!
//! - Topics are created explicitly at start-up with a configurable partition count and
//!   replication factor (`kafka://HOST:PORT[,HOST:PORT...][?partitions=N&replication=N&
//!   namespace=NAME]`).
//! - TLS and SASL (a managed Kafka: MSK, Confluent Cloud) are librdkafka's own settings, given in
//!   the same query: `security.protocol`, every `ssl.*` and every `sasl.*` key is passed to every
//!   client as it is (`kafka://b:9093?security.protocol=SASL_SSL&sasl.mechanism=SCRAM-SHA-512&
//!   sasl.username=bank&sasl.password=...&ssl.ca.location=/etc/onlinebank/kafka-ca.pem`); values
//!   are percent-decoded. OpenSSL is linked in statically; without `ssl.ca.location` librdkafka
//!   looks for the system's CA bundle. The URL may hold a password: it is never logged. A namespace prefixes every topic and consumer group (`NAME.topic`), so
//!   several banks (or test runs) can share one cluster without seeing each other's events.
//! - Events are keyed by account number, so one account's events stay in one partition, in
//!   order.
//! - The producer is idempotent with `acks=all`: a retried send is never duplicated or
//!   reordered within a partition.
//! - One consumer group per role. Offsets are committed only for events whose handler
//!   transaction has committed (auto-commit and auto-store are off); after a rebalance or a
//!   crash the new owner re-reads from the last committed offset and the handlers' inboxes skip
//!   what was already applied.

use crate::{Delivery, Record};
use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// `url` with `sasl.password=password` when it is a Kafka URL without a password of its own (the
/// password then comes from a Secret of its own instead of inside the URL).
pub fn with_sasl_password(url: &str, password: &str) -> String {
    if !url.starts_with("kafka://") || url.contains("sasl.password=") {
        return url.to_owned();
    }
    let encoded =
        percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC);
    let joint = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joint}sasl.password={encoded}")
}

/// Topic settings and the broker list parsed from a `kafka://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    pub brokers: String,
    pub partitions: i32,
    pub replication: i32,
    /// Prefix of every topic and group name ("" for none).
    pub namespace: String,
    /// librdkafka settings passed through: `security.protocol`, `ssl.*`, `sasl.*`.
    pub client_options: Vec<(String, String)>,
}

impl std::fmt::Debug for KafkaConfig {
    /// Passwords (`sasl.password`, `ssl.*password*`) are shown as `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options: Vec<(&str, &str)> = self
            .client_options
            .iter()
            .map(|(name, value)| {
                let shown = if name.contains("password") || name.contains("secret") {
                    "***"
                } else {
                    value.as_str()
                };
                (name.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("partitions", &self.partitions)
            .field("replication", &self.replication)
            .field("namespace", &self.namespace)
            .field("client_options", &options)
            .finish()
    }
}

impl KafkaConfig {
    /// Parses `kafka://host:port,host:port?partitions=8&replication=1`.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("kafka://")
            .ok_or_else(|| anyhow::anyhow!("a Kafka bus url starts with kafka://"))?;
        let (brokers, query) = rest.split_once('?').unwrap_or((rest, ""));
        anyhow::ensure!(!brokers.is_empty(), "no Kafka brokers in the bus url");
        let mut config = KafkaConfig {
            brokers: brokers.to_owned(),
            partitions: 8,
            replication: 1,
            namespace: String::new(),
            client_options: Vec::new(),
        };
        // Errors name the setting, never echo the URL: it may hold a SASL password.
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if name == "security.protocol" || name.starts_with("ssl.") || name.starts_with("sasl.")
            {
                let value = percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .map_err(|_| anyhow::anyhow!("{name} in the Kafka bus url is not UTF-8"))?;
                anyhow::ensure!(!value.is_empty(), "{name} in the Kafka bus url is empty");
                config
                    .client_options
                    .push((name.to_owned(), value.into_owned()));
                continue;
            }
            if name == "namespace" {
                anyhow::ensure!(
                    !value.is_empty()
                        && value
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                    "namespace in the Kafka bus url must be letters, digits, - or _"
                );
                config.namespace = value.to_owned();
                continue;
            }
            let number: i32 = value
                .parse()
                .with_context(|| format!("{name} in the Kafka bus url must be a number"))?;
            anyhow::ensure!(
                number >= 1,
                "{name} in the Kafka bus url must be at least 1"
            );
            match name {
                "partitions" => config.partitions = number,
                "replication" => config.replication = number,
                other => anyhow::bail!(
                    "unknown Kafka bus setting {other} (known: partitions, replication, \
                     namespace, security.protocol, ssl.*, sasl.*)"
                ),
            }
        }
        Ok(config)
    }

    /// The broker-side name of a topic or group.
    pub fn physical(&self, name: &str) -> String {
        if self.namespace.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.namespace)
        }
    }

    /// The topic name the bank knows for a broker-side one.
    fn logical<'a>(&self, physical: &'a str) -> &'a str {
        if self.namespace.is_empty() {
            return physical;
        }
        physical
            .strip_prefix(self.namespace.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(physical)
    }

    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("socket.keepalive.enable", "true")
            .set("reconnect.backoff.max.ms", "1000");
        for (name, value) in &self.client_options {
            config.set(name, value);
        }
        config
    }
}

/// A connection to a Kafka cluster: one idempotent producer, consumers made per group.
#[derive(Clone)]
pub struct KafkaBus {
    config: KafkaConfig,
    producer: FutureProducer,
    /// For metadata queries (no group membership).
    probe: Arc<BaseConsumer>,
    /// Per consumer group, a client that reads the group's committed offsets (for lag).
    readers: Arc<std::sync::Mutex<HashMap<String, Arc<BaseConsumer>>>>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("config", &self.config)
            .finish()
    }
}

impl KafkaBus {
    /// Connects and creates `topics` if missing.
    pub async fn open(url: &str, topics: &[&str]) -> anyhow::Result<Self> {
        let config = KafkaConfig::parse(url)?;
        let producer: FutureProducer = config
            .client()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "15000")
            .set("compression.type", "none")
            .create()
            .context("creating the Kafka producer")?;
        let probe: BaseConsumer = config
            .client()
            .set("group.id", "onlinebank-probe")
            .set("enable.auto.commit", "false")
            .create()
            .context("creating the Kafka metadata client")?;
        let bus = KafkaBus {
            config,
            producer,
            probe: Arc::new(probe),
            readers: Arc::default(),
        };
        // A role starts even while the brokers are down (it reports not ready until they
        // answer): the topics are then created in the background as soon as possible.
        let created =
            tokio::time::timeout(Duration::from_secs(10), bus.create_topics(topics)).await;
        if !matches!(created, Ok(Ok(()))) {
            tracing::warn!("Kafka unreachable at start-up; creating the topics in the background");
            let background = bus.clone();
            let topics: Vec<String> = topics.iter().map(|topic| (*topic).to_owned()).collect();
            tokio::spawn(async move {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                loop {
                    match background.create_topics(&topics).await {
                        Ok(()) => return,
                        Err(error) => {
                            tracing::debug!(error = %format!("{error:#}"), "creating topics");
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                    }
                }
            });
        }
        Ok(bus)
    }

    async fn create_topics(&self, topics: &[&str]) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .config
            .client()
            .create()
            .context("creating the Kafka admin client")?;
        let names: Vec<String> = topics
            .iter()
            .map(|topic| self.config.physical(topic))
            .collect();
        let new: Vec<NewTopic> = names
            .iter()
            .map(|topic| {
                NewTopic::new(
                    topic,
                    self.config.partitions,
                    TopicReplication::Fixed(self.config.replication),
                )
                .set(
                    "min.insync.replicas",
                    if self.config.replication >= 3 {
                        "2"
                    } else {
                        "1"
                    },
                )
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        let results = admin
            .create_topics(new.iter(), &options)
            .await
            .context("creating the Kafka topics")?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => anyhow::bail!("creating Kafka topic {topic}: {code}"),
            }
        }
        Ok(())
    }

    /// Sends every record and waits until the brokers acknowledged all of them (`acks=all`).
    pub async fn publish(&self, records: &[Record]) -> anyhow::Result<()> {
        let topics: Vec<String> = records
            .iter()
            .map(|record| self.config.physical(&record.topic))
            .collect();
        let sends = records.iter().zip(&topics).map(|(record, topic)| {
            self.producer.send(
                FutureRecord::to(topic)
                    .key(&record.key)
                    .payload(&record.body),
                Duration::from_secs(15),
            )
        });
        for result in futures::future::join_all(sends).await {
            result.map_err(|(error, _)| anyhow::anyhow!("publishing to Kafka: {error}"))?;
        }
        Ok(())
    }

    /// Joins consumer group `group` on `topics`.
    pub async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> anyhow::Result<KafkaSubscription> {
        let consumer: StreamConsumer = self
            .config
            .client()
            .set("group.id", self.config.physical(group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            // The broker answers a fetch as soon as data arrives; this only bounds idle polls.
            .set("fetch.wait.max.ms", "250")
            // Eager rebalancing: every rebalance revokes everything and each partition resumes
            // from its committed offset. (With cooperative-sticky, partitions lost during a
            // broker outage resumed from the prefetch position here, skipping events.)
            .set("partition.assignment.strategy", "range")
            .create()
            .context("creating the Kafka consumer")?;
        let physical: Vec<String> = topics
            .iter()
            .map(|topic| self.config.physical(topic))
            .collect();
        let physical: Vec<&str> = physical.iter().map(String::as_str).collect();
        consumer
            .subscribe(&physical)
            .with_context(|| format!("subscribing group {group}"))?;
        Ok(KafkaSubscription {
            config: self.config.clone(),
            consumer,
            inbound: Inbound::default(),
            owed: HashMap::new(),
        })
    }

    /// Whether a broker answers a metadata request.
    pub async fn ping(&self) -> bool {
        let probe = self.probe.clone();
        tokio::task::spawn_blocking(move || {
            probe
                .fetch_metadata(None, Duration::from_secs(2))
                .map(|metadata| !metadata.brokers().is_empty())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }

    /// Events on `topics` the group has not committed yet, summed over every partition.
    pub async fn lag(&self, group: &str, topics: &[&str]) -> anyhow::Result<i64> {
        let reader = {
            let mut readers = self
                .readers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match readers.get(group) {
                Some(reader) => reader.clone(),
                None => {
                    let reader: Arc<BaseConsumer> = Arc::new(
                        self.config
                            .client()
                            .set("group.id", self.config.physical(group))
                            .set("enable.auto.commit", "false")
                            .create()?,
                    );
                    readers.insert(group.to_owned(), reader.clone());
                    reader
                }
            }
        };
        let topics: Vec<String> = topics
            .iter()
            .map(|topic| self.config.physical(topic))
            .collect();
        tokio::task::spawn_blocking(move || -> anyhow::Result<i64> {
            let timeout = Duration::from_secs(5);
            let mut partitions = TopicPartitionList::new();
            for topic in &topics {
                let metadata = reader.fetch_metadata(Some(topic), timeout)?;
                for found in metadata.topics() {
                    for partition in found.partitions() {
                        partitions.add_partition(topic, partition.id());
                    }
                }
            }
            let committed = reader.committed_offsets(partitions, timeout)?;
            let mut lag = 0;
            for element in committed.elements() {
                let (low, high) =
                    reader.fetch_watermarks(element.topic(), element.partition(), timeout)?;
                let done = match element.offset() {
                    Offset::Offset(offset) => offset,
                    _ => low,
                };
                lag += (high - done).max(0);
            }
            Ok(lag)
        })
        .await?
    }
}

/// A group member's stream of deliveries and the offsets it still owes a commit.
pub struct KafkaSubscription {
    config: KafkaConfig,
    consumer: StreamConsumer,
    inbound: Inbound,
    /// Applied, commit not yet confirmed: per partition, the next offset to read.
    owed: HashMap<(String, i32), i64>,
}

impl std::fmt::Debug for KafkaSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSubscription")
            .field("pending", &self.inbound.pending.len())
            .finish()
    }
}

impl KafkaSubscription {
    /// Waits for at least one event, then takes what else is already fetched, up to `max`.
    ///
    /// Cancel-safe (the consumer loop races it against its commit timer): every message taken
    /// from the client waits in `ready` until a call returns it, so a dropped call loses none.
    pub async fn next_batch(&mut self, max: usize) -> anyhow::Result<Vec<Delivery>> {
        while self.inbound.ready.is_empty() {
            // Broker outages surface here as errors; the client reconnects by itself.
            match self.consumer.recv().await {
                Ok(message) => {
                    self.inbound.accept(&self.config, &message);
                }
                Err(error) => {
                    tracing::debug!(%error, "Kafka consumer error, waiting");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        while self.inbound.ready.len() < max {
            match tokio::time::timeout(Duration::from_millis(1), self.consumer.recv()).await {
                Ok(Ok(message)) => {
                    self.inbound.accept(&self.config, &message);
                }
                Ok(Err(error)) => {
                    tracing::debug!(%error, "Kafka consumer error");
                    break;
                }
                Err(_) => break,
            }
        }
        Ok(std::mem::take(&mut self.inbound.ready))
    }

    /// Commits, per partition, the offset after the last event delivered at or before
    /// `position` (synchronously: an error leaves it owed, and the consumer loop calls again).
    /// Partitions this member no longer owns are dropped: their new owner re-reads from the
    /// last committed offset, and the handlers' inboxes skip what was applied here.
    pub async fn commit(&mut self, position: i64) -> anyhow::Result<()> {
        while let Some((at, _, _, _)) = self.inbound.pending.front() {
            if *at > position {
                break;
            }
            if let Some((_, topic, partition, offset)) = self.inbound.pending.pop_front() {
                let slot = self.owed.entry((topic, partition)).or_insert(offset + 1);
                *slot = (*slot).max(offset + 1);
            }
        }
        if self.owed.is_empty() {
            return Ok(());
        }
        let owned = self.consumer.assignment()?;
        self.owed
            .retain(|(topic, partition), _| owned.find_partition(topic, *partition).is_some());
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.owed {
            offsets.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        if offsets.count() == 0 {
            return Ok(());
        }
        let consumer = &self.consumer;
        tokio::task::block_in_place(|| consumer.commit(&offsets, CommitMode::Sync))?;
        self.owed.clear();
        Ok(())
    }

    /// Goes back to the first uncommitted event of every partition (after a failed batch).
    pub async fn rewind(&mut self) -> anyhow::Result<()> {
        self.inbound.ready.clear();
        let mut first: HashMap<(String, i32), i64> = HashMap::new();
        for (_, topic, partition, offset) in self.inbound.pending.drain(..) {
            first.entry((topic, partition)).or_insert(offset);
        }
        let mut sought = true;
        for ((topic, partition), offset) in first {
            if let Err(error) = self.consumer.seek(
                &topic,
                partition,
                Offset::Offset(offset),
                Duration::from_secs(5),
            ) {
                tracing::warn!(%topic, partition, %error, "seek failed");
                sought = false;
            }
        }
        if !sought {
            // Never read on past events that were not applied: leave the group and join again,
            // so every partition resumes from its committed offset (the inboxes skip what was
            // applied but not yet committed).
            let topics: Vec<String> = self
                .consumer
                .subscription()?
                .elements()
                .iter()
                .map(|element| element.topic().to_owned())
                .collect();
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            self.consumer.unsubscribe();
            self.owed.clear();
            self.consumer.subscribe(&topics)?;
        }
        Ok(())
    }
}

/// Messages taken from the client: numbered, remembered until committed, and held until
/// `next_batch` returns them.
#[derive(Default)]
struct Inbound {
    next_position: i64,
    /// Delivered but not committed: (position, topic, partition, offset), in position order.
    pending: VecDeque<(i64, String, i32, i64)>,
    /// Taken from the client, not yet returned by `next_batch`.
    ready: Vec<Delivery>,
}

impl Inbound {
    fn accept<M: Message>(&mut self, config: &KafkaConfig, message: &M) {
        self.next_position += 1;
        let position = self.next_position;
        self.pending.push_back((
            position,
            message.topic().to_owned(),
            message.partition(),
            message.offset(),
        ));
        self.ready.push(Delivery {
            position,
            topic: config.logical(message.topic()).to_owned(),
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            body: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_and_settings() {
        assert_eq!(
            KafkaConfig::parse("kafka://127.0.0.1:9092").unwrap(),
            KafkaConfig {
                brokers: "127.0.0.1:9092".into(),
                partitions: 8,
                replication: 1,
                namespace: String::new(),
                client_options: Vec::new(),
            }
        );
        let config = KafkaConfig::parse("kafka://a:1,b:2?partitions=3&replication=2").unwrap();
        assert_eq!(
            (
                config.brokers.as_str(),
                config.partitions,
                config.replication
            ),
            ("a:1,b:2", 3, 2)
        );
        let config = KafkaConfig::parse("kafka://a:1?namespace=run-7").unwrap();
        assert_eq!(
            config.physical("onlinebank.requests"),
            "run-7.onlinebank.requests"
        );
        assert_eq!(
            config.logical("run-7.onlinebank.requests"),
            "onlinebank.requests"
        );
        assert!(KafkaConfig::parse("kafka://a:1?namespace=a.b").is_err());
        assert!(KafkaConfig::parse("kafka://").is_err());
        assert!(KafkaConfig::parse("kafka://a:1?partitions=0").is_err());
        assert!(KafkaConfig::parse("kafka://a:1?colour=blue").is_err());
        assert!(KafkaConfig::parse("http://a:1").is_err());
    }

    #[test]
    fn tls_and_sasl_settings_pass_through_and_never_show_the_password() {
        let url = "kafka://b:9093?security.protocol=SASL_SSL&sasl.mechanism=PLAIN\
                   &sasl.username=bank&sasl.password=p%26ss%3Dword&ssl.ca.location=/ca.pem\
                   &partitions=2";
        let config = KafkaConfig::parse(url).unwrap();
        assert_eq!(config.partitions, 2);
        let options: Vec<(&str, &str)> = config
            .client_options
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        assert_eq!(
            options,
            [
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "PLAIN"),
                ("sasl.username", "bank"),
                ("sasl.password", "p&ss=word"),
                ("ssl.ca.location", "/ca.pem"),
            ]
        );
        let client = config.client();
        assert_eq!(client.get("sasl.password"), Some("p&ss=word"));
        assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("p&ss"), "{shown}");
        assert!(shown.contains("SASL_SSL"), "{shown}");
        // Errors name the key, not the URL (which may hold the password).
        let error = KafkaConfig::parse("kafka://b:1?sasl.password=hunter2&partitions=x")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(KafkaConfig::parse("kafka://b:1?sasl.username=").is_err());
    }

    #[test]
    fn a_separate_sasl_password_joins_a_url_that_has_none() {
        let url = with_sasl_password("kafka://b:1?sasl.username=bank", "p&ss word");
        let config = KafkaConfig::parse(&url).unwrap();
        assert_eq!(config.client().get("sasl.password"), Some("p&ss word"));
        assert_eq!(
            with_sasl_password("kafka://b:1", "x"),
            "kafka://b:1?sasl.password=x"
        );
        let own = "kafka://b:1?sasl.password=mine";
        assert_eq!(with_sasl_password(own, "other"), own);
        assert_eq!(with_sasl_password("embedded", "x"), "embedded");
    }

    pub(crate) fn kafka_url(namespace: &str) -> String {
        let brokers = std::env::var("ONLINEBANK_TEST_KAFKA").unwrap_or_else(|_| {
            panic!(
                "this test needs a real Kafka broker: run ./.ci/run, or dev/kafka.sh start and \
                 export ONLINEBANK_TEST_KAFKA=127.0.0.1:9092"
            )
        });
        let unique = &uuid::Uuid::new_v4().simple().to_string()[..12];
        format!("kafka://{brokers}?partitions=3&namespace={namespace}_{unique}")
    }

    fn record(key: &str, n: usize) -> Record {
        Record {
            id: format!("{key}-{n}"),
            topic: "onlinebank.requests".into(),
            key: key.into(),
            body: format!("{key}:{n}"),
        }
    }

    async fn drain(sub: &mut KafkaSubscription, want: usize) -> Vec<Delivery> {
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while got.len() < want {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {want}",
                got.len()
            );
            if let Ok(batch) =
                tokio::time::timeout(Duration::from_secs(1), sub.next_batch(100)).await
            {
                got.extend(batch.unwrap());
            }
        }
        got
    }

    /// Against the real broker: keyed order per account, commit-after-apply, and redelivery of
    /// what was not committed to the next member of the group.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Kafka (ONLINEBANK_TEST_KAFKA): ./.ci/run runs it"]
    async fn a_group_gets_each_key_in_order_and_uncommitted_events_again() {
        let url = kafka_url("bus");
        let bus = KafkaBus::open(&url, &onlinebank_core::event::TOPICS)
            .await
            .unwrap();
        let records: Vec<Record> = (0..30).map(|n| record(["a", "b", "c"][n % 3], n)).collect();
        bus.publish(&records).await.unwrap();

        let mut first = bus.subscribe("g", &["onlinebank.requests"]).await.unwrap();
        let got = drain(&mut first, 30).await;
        for key in ["a", "b", "c"] {
            let order: Vec<&str> = got
                .iter()
                .filter(|d| d.key == key)
                .map(|d| d.body.as_str())
                .collect();
            let expected: Vec<String> = (0..30)
                .filter(|n| ["a", "b", "c"][n % 3] == key)
                .map(|n| format!("{key}:{n}"))
                .collect();
            assert_eq!(order, expected, "per-key order");
        }
        assert!(got.iter().all(|d| d.topic == "onlinebank.requests"));
        // Commit the first 10 deliveries only, then leave.
        first.commit(got[9].position).await.unwrap();
        drop(first);

        // The next member re-reads everything after the committed offsets: at least the 20
        // uncommitted ones, and none of the committed ones.
        let mut second = bus.subscribe("g", &["onlinebank.requests"]).await.unwrap();
        let again = drain(&mut second, 20).await;
        let committed: std::collections::HashSet<&str> =
            got[..10].iter().map(|d| d.body.as_str()).collect();
        let uncommitted: std::collections::HashSet<&str> =
            got[10..].iter().map(|d| d.body.as_str()).collect();
        let again: std::collections::HashSet<&str> =
            again.iter().map(|d| d.body.as_str()).collect();
        assert_eq!(again, uncommitted);
        assert!(again.is_disjoint(&committed));
        let last = second.inbound.next_position;
        second.commit(last).await.unwrap();
        assert_eq!(bus.lag("g", &["onlinebank.requests"]).await.unwrap(), 0);
        assert!(bus.ping().await);
    }
}
