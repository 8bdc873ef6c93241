//! A role as the simulator runs it: its database (an in-memory SQLite with the role's real
//! migrations, which survives the role's crashes) and what dies with the process (its consumer
//! groups' fetch positions, its relay's watermark, its sagas in flight: see [`Node::crash`]).

use crate::bus::Partition;
use onlinebank_bus::handler::{apply_batch, EventHandler};
use onlinebank_core::db::{Conn, Migrations};
use onlinebank_core::event::{Envelope, Event};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;

/// Runs a store future that must not wait: on SQLite every statement completes synchronously,
/// so a future still pending would be a hidden timer or I/O, which the simulation refuses.
pub fn now<F: Future>(future: F) -> anyhow::Result<F::Output> {
    futures::FutureExt::now_or_never(future)
        .ok_or_else(|| anyhow::anyhow!("a store future waited on something outside SQLite"))
}

/// A role's consumer group: the real handler, behind one object type for every role.
pub trait Consumer {
    fn wants(&self, event: &Event) -> bool;
    /// The real [`apply_batch`] (inbox, then the role's apply and finish) in the caller's
    /// transaction.
    fn apply(&self, conn: &mut Conn, decoded: Vec<Envelope>) -> anyhow::Result<()>;
}

struct Real<H> {
    role: &'static str,
    group: &'static str,
    handler: H,
}

impl<H: EventHandler> Consumer for Real<H> {
    fn wants(&self, event: &Event) -> bool {
        self.handler.wants(event)
    }

    fn apply(&self, conn: &mut Conn, decoded: Vec<Envelope>) -> anyhow::Result<()> {
        let applying = apply_batch(conn, self.handler.clone(), self.role, self.group, decoded);
        now(applying)??;
        Ok(())
    }
}

/// One consumer group of a node.
pub struct Group {
    pub name: &'static str,
    pub topics: &'static [&'static str],
    pub consumer: Box<dyn Consumer>,
    /// Where the group reads next, per partition (volatile: back to the committed position
    /// after a crash).
    pub fetched: BTreeMap<Partition, usize>,
}

/// One role.
pub struct Node {
    pub name: &'static str,
    pub conn: Conn,
    pub up: bool,
    /// Counts the node's lives: work started in an earlier one died with it.
    pub epoch: u64,
    pub groups: Vec<Group>,
    /// Whether it publishes (ships its outbox).
    pub publishes: bool,
    /// The relay's watermark: outbox rows up to this `seq` are shipped (volatile).
    pub shipped_to: i64,
}

impl Node {
    /// A node on a fresh in-memory database with `migrations` and the bus's tables: a copy of
    /// the role's database as migrated once on this thread.
    pub fn new(
        name: &'static str,
        migrations: &Migrations,
        publishes: bool,
    ) -> anyhow::Result<Self> {
        let conn = TEMPLATES.with(|templates| {
            let mut templates = templates.borrow_mut();
            if !templates.contains_key(name) {
                templates.insert(name, migrated(name, migrations)?);
            }
            match templates.get(name) {
                Some(template) => Ok(template.sqlite_memory_copy()?),
                None => Err(anyhow::anyhow!("no template for {name}")),
            }
        })?;
        Ok(Self {
            name,
            conn,
            up: true,
            epoch: 0,
            groups: Vec::new(),
            publishes,
            shipped_to: 0,
        })
    }

    /// Adds the consumer group `group` of `role`, reading `topics` with `handler`.
    pub fn consume<H: EventHandler>(
        &mut self,
        group: &'static str,
        topics: &'static [&'static str],
        handler: H,
    ) {
        self.groups.push(Group {
            name: group,
            topics,
            consumer: Box::new(Real {
                role: self.name,
                group,
                handler,
            }),
            fetched: BTreeMap::new(),
        });
    }

    /// The process dies: what it had not committed is gone (a transaction is never left open
    /// between steps), its fetch positions and relay watermark with it.
    pub fn crash(&mut self) {
        self.up = false;
        self.epoch += 1;
        for group in &mut self.groups {
            group.fetched.clear();
        }
        self.shipped_to = 0;
    }

    /// Runs `job` in one transaction on the node's database (see [`transaction`]).
    pub fn write<T>(
        &mut self,
        job: impl FnOnce(&mut Conn) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        transaction(&mut self.conn, job)
    }

    pub fn restart(&mut self) {
        self.up = true;
    }
}

thread_local! {
    /// Each role's database as migrated, once per thread.
    static TEMPLATES: RefCell<BTreeMap<&'static str, Conn>> = const { RefCell::new(BTreeMap::new()) };
}

/// A new in-memory database with the role's migrations and the bus's tables.
fn migrated(name: &'static str, migrations: &Migrations) -> anyhow::Result<Conn> {
    let mut conn = Conn::sqlite_memory()?;
    let known = onlinebank_bus::schema::with_bus(migrations)?;
    let known = known.for_engine(onlinebank_core::db::Engine::Sqlite);
    transaction(&mut conn, |conn| {
        now(onlinebank_core::db::migrate::run(conn, name, known))??;
        Ok(())
    })?;
    Ok(conn)
}

/// Runs `job` in one transaction: committed if it returns Ok, rolled back otherwise.
pub fn transaction<T>(
    conn: &mut Conn,
    job: impl FnOnce(&mut Conn) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    now(conn.batch("BEGIN IMMEDIATE"))??;
    match job(conn) {
        Ok(value) => {
            now(conn.batch("COMMIT"))??;
            Ok(value)
        }
        Err(error) => {
            now(conn.batch("ROLLBACK"))??;
            Err(error)
        }
    }
}

/// Runs `job` in a transaction that the process's crash interrupts before its commit: rolled
/// back, as if never begun.
pub fn crashed_transaction(
    conn: &mut Conn,
    job: impl FnOnce(&mut Conn) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    now(conn.batch("BEGIN IMMEDIATE"))??;
    let _ = job(conn);
    now(conn.batch("ROLLBACK"))??;
    Ok(())
}
