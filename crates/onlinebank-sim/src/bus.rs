//! The simulated bus: each topic split into partitions by the record's key (as Kafka does:
//! in order within a partition, any order across), every consumer group's committed position per
//! partition. It keeps what the real buses keep across a crash: the records and the committed
//! positions; a consumer's fetch position is the consumer's own, lost with it.

use onlinebank_bus::{Delivery, Record};
use std::collections::BTreeMap;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Partition {
    pub topic: &'static str,
    pub index: usize,
}

pub struct SimBus {
    partitions: usize,
    logs: BTreeMap<Partition, Vec<Delivery>>,
    /// Per consumer group and partition: the number of records it committed as applied.
    committed: BTreeMap<(&'static str, Partition), usize>,
}

impl SimBus {
    pub fn new(topics: &[&'static str], partitions: usize) -> Self {
        let logs = topics
            .iter()
            .flat_map(|topic| (0..partitions).map(|index| Partition { topic, index }))
            .map(|partition| (partition, Vec::new()))
            .collect();
        Self {
            partitions,
            logs,
            committed: BTreeMap::new(),
        }
    }

    /// Appends `record` to its key's partition (FNV-1a of the key: the same on every machine).
    pub fn publish(&mut self, record: Record) -> anyhow::Result<()> {
        let index = usize::try_from(fnv1a(&record.key) % self.partitions as u64)?;
        let log = self
            .logs
            .iter_mut()
            .find(|(partition, _)| partition.topic == record.topic && partition.index == index)
            .map(|(_, log)| log)
            .ok_or_else(|| anyhow::anyhow!("no topic {}", record.topic))?;
        log.push(Delivery {
            position: i64::try_from(log.len())?,
            topic: record.topic,
            key: record.key,
            body: record.body,
        });
        Ok(())
    }

    /// The partitions of `topics`, in one order.
    pub fn partitions_of(&self, topics: &[&str]) -> Vec<Partition> {
        self.logs
            .keys()
            .filter(|partition| topics.contains(&partition.topic))
            .cloned()
            .collect()
    }

    pub fn len(&self, partition: &Partition) -> usize {
        self.logs.get(partition).map_or(0, Vec::len)
    }

    pub fn read(&self, partition: &Partition, from: usize, count: usize) -> Vec<Delivery> {
        self.logs
            .get(partition)
            .map(|log| log.iter().skip(from).take(count).cloned().collect())
            .unwrap_or_default()
    }

    pub fn committed(&self, group: &'static str, partition: &Partition) -> usize {
        self.committed
            .get(&(group, partition.clone()))
            .copied()
            .unwrap_or(0)
    }

    pub fn commit(&mut self, group: &'static str, partition: &Partition, next: usize) {
        self.committed.insert((group, partition.clone()), next);
    }

    /// Records published in all.
    pub fn published(&self) -> usize {
        self.logs.values().map(Vec::len).sum()
    }
}

fn fnv1a(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
