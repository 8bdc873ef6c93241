//! One simulated bank: the nodes, the bus, the clients' requests and one queue of timed tasks,
//! all driven by one seed. Each step pops the earliest task (ties in the order they were
//! queued), sets the simulated clock, does it, draws its faults and checks the step invariants.

use crate::bus::{Partition, SimBus};
use crate::node::{crashed_transaction, now, transaction, Node};
use crate::oracle;
use crate::saga::{Attempt, Verdict};
use crate::workload::{self, Op};
use onlinebank_bus::{Delivery, Record};
use onlinebank_core::ambient::{self, Ambient, Injection};
use onlinebank_core::event::{TOPIC_ACCOUNTS, TOPIC_REQUESTS};
use onlinebank_core::ids::RequestId;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

pub const REQUEST: usize = 0;
pub const ACCOUNT: usize = 1;
pub const HISTORY: usize = 2;
pub const MYPAGE: usize = 3;
pub const AUTH: usize = 4;

/// After the last request is sent: faults stop, every node restarts, the bank must go quiet
/// within this long (a client may send 6 times, up to 15 s apart, each slow).
const DRAIN_LIMIT_MS: u64 = 300_000;

/// What a run is asked to do.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub injections: BTreeSet<Injection>,
    pub trace: bool,
}

/// The faults and shapes the seed picked.
#[derive(Debug)]
pub struct Faults {
    pub partitions: usize,
    pub max_batch: usize,
    /// A node crashes at a step.
    pub crash: f64,
    /// A consumer crashes inside its transaction, or between its commit and its position.
    pub crash_in_step: f64,
    /// A consumer rereads from its committed position (redelivery without a crash).
    pub rewind: f64,
    /// The sweeper's read and its write are this far apart at most.
    pub sweep_gap_ms: u64,
    /// An answer is lost on its way to the client.
    pub lost_answer: f64,
    /// A client that does not know what happened (or was told to try again) sends again.
    pub retry: f64,
}

#[derive(Debug)]
pub(crate) enum Task {
    /// A client sends op (again).
    Submit(usize),
    /// auth reads the session and its lock, and checks the password.
    StepUpRead {
        attempt: usize,
        epoch: u64,
    },
    /// auth's deciding write: the lockout and the audit.
    StepUpWrite {
        attempt: usize,
        epoch: u64,
        auth_epoch: u64,
        tried: onlinebank_auth::sim::Attempt,
    },
    /// auth's answer reaches request (or its timeout does, first).
    SteppedUp {
        attempt: usize,
        epoch: u64,
        verdict: Verdict,
    },
    Certify {
        attempt: usize,
        epoch: u64,
    },
    Await {
        attempt: usize,
        epoch: u64,
        deadline: u64,
    },
    Consume {
        node: usize,
        group: usize,
    },
    Relay {
        node: usize,
    },
    Sweep,
    SweepWrite {
        ids: Vec<RequestId>,
        epoch: u64,
    },
    Restart {
        node: usize,
    },
    /// The wall clock jumps forward (the simulated monotonic clock, which times every task,
    /// does not).
    ClockJump {
        ms: i64,
    },
    Check,
}

/// A broken rule.
#[derive(Debug, Clone)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

pub struct World {
    pub rng: ChaCha8Rng,
    pub faults: Faults,
    pub config: Config,
    pub nodes: Vec<Node>,
    pub bus: SimBus,
    pub ops: Vec<Op>,
    /// The workload's knobs, for the sendings' latencies.
    pub shape: workload::Shape,
    /// Every sending of every op, in order.
    pub attempts: Vec<Attempt>,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    tasks: BTreeMap<u64, Task>,
    next_seq: u64,
    pub now_ms: u64,
    wall_base_ms: i64,
    /// What the wall clock's jumps added.
    wall_jumped_ms: i64,
    /// Requests are sent until then; faults stop a second later.
    load_until_ms: u64,
    pub trace: Vec<String>,
    pub steps: u64,
    /// A step changed what the step invariants read (account's or mypage's tables).
    touched: bool,
}

impl World {
    /// A fresh bank for `seed`, with its workload drawn; the ambient source entered on this
    /// thread (left when the guard drops).
    pub fn new(seed: u64, config: Config) -> anyhow::Result<(Self, ambient::Entered)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Midnight in Seoul falls inside some runs, so daily limits roll over.
        let wall_base_ms = 1_796_000_000_000 + rng.random_range(0..86_400_000);
        let entered = ambient::enter(Ambient {
            wall_ms: wall_base_ms,
            rng: Box::new(ChaCha8Rng::seed_from_u64(rng.next_u64())),
            injections: config.injections.clone(),
        });
        let faults = Faults {
            partitions: rng.random_range(1..=4),
            max_batch: rng.random_range(1..=8),
            crash: rng.random_range(0.0..0.004),
            crash_in_step: rng.random_range(0.0..0.05),
            rewind: rng.random_range(0.0..0.02),
            sweep_gap_ms: rng.random_range(0..=800),
            lost_answer: rng.random_range(0.0..0.1),
            retry: rng.random_range(0.3..1.0),
        };
        let shape = workload::Shape {
            ops: rng.random_range(10..=60),
            span_ms: rng.random_range(2_000..=20_000),
            // A quarter of the runs have a customer who keeps getting the password wrong.
            wrong_password: if rng.random_bool(0.25) {
                rng.random_range(0.5..0.9)
            } else {
                rng.random_range(0.0..0.15)
            },
            slow_step_up: rng.random_range(0.0..0.1),
            slow_write: rng.random_range(0.0..0.2),
        };
        let workload = workload::draw(&mut rng, &shape)?;
        let ops = workload.ops;
        let mut world = Self {
            load_until_ms: shape.span_ms,
            shape,
            bus: SimBus::new(&[TOPIC_REQUESTS, TOPIC_ACCOUNTS], faults.partitions),
            faults,
            nodes: nodes()?,
            attempts: Vec::new(),
            ops,
            rng,
            config,
            queue: BinaryHeap::new(),
            tasks: BTreeMap::new(),
            next_seq: 0,
            now_ms: 0,
            wall_base_ms,
            wall_jumped_ms: 0,
            trace: Vec::new(),
            steps: 0,
            touched: false,
        };
        world.open_sessions(&workload.customers)?;
        world.note(format!("faults {:?}", world.faults));
        world.schedule_start();
        Ok((world, entered))
    }

    fn schedule_start(&mut self) {
        for op in 0..self.ops.len() {
            self.at(self.ops[op].at_ms, Task::Submit(op));
        }
        for node in 0..self.nodes.len() {
            for group in 0..self.nodes[node].groups.len() {
                self.at(1, Task::Consume { node, group });
            }
            if self.nodes[node].publishes {
                self.at(1, Task::Relay { node });
            }
        }
        self.at(1_000, Task::Sweep);
        self.schedule_clock_jumps();
        self.at(self.load_until_ms + 1_000, Task::Check);
    }

    /// In some runs the wall clock jumps forward once or more during the load, by about the
    /// lockout's window, a token's lifetime, the sweeper's grace, or a little.
    fn schedule_clock_jumps(&mut self) {
        if !self.rng.random_bool(0.3) {
            return;
        }
        let lockout = crate::auth::RULE.window;
        let token = i64::try_from(onlinebank_core::settings::defaults::TOKEN_TTL_SECS)
            .unwrap_or(3_600)
            * 1_000;
        let grace = onlinebank_request::sim::sweep_grace(std::time::Duration::from_millis(
            crate::saga::STEP_UP_TIMEOUT_MS,
        ));
        for _ in 0..self.rng.random_range(1..=3) {
            let near = [lockout, token, grace, 0][self.rng.random_range(0..4)];
            let ms = (near + self.rng.random_range(-1_000..=1_000)).max(1);
            let at = self.rng.random_range(1..=self.load_until_ms);
            self.at(at, Task::ClockJump { ms });
        }
    }

    /// Runs until the bank is quiet after the load, or a rule breaks.
    pub fn run(&mut self) -> Result<(), Violation> {
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            let Some(task) = self.tasks.remove(&seq) else {
                continue;
            };
            self.now_ms = at;
            self.steps += 1;
            let elapsed = i64::try_from(at).unwrap_or(i64::MAX / 4);
            ambient::set_wall_ms(self.wall_base_ms + self.wall_jumped_ms + elapsed);
            let quiet = self.step(task).map_err(|error| Violation {
                invariant: "the simulated bank ran without an internal error",
                detail: format!("{error:#}"),
            })?;
            if quiet {
                return oracle::after_drain(self);
            }
            if self.faulty() {
                self.maybe_crash();
            }
            if std::mem::take(&mut self.touched) {
                oracle::after_step(self)?;
            }
            if at > self.load_until_ms + DRAIN_LIMIT_MS {
                return Err(Violation {
                    invariant: "the bank drains: no request pending, no event unapplied",
                    detail: oracle::unquiet(self).unwrap_or_default(),
                });
            }
        }
        Err(Violation {
            invariant: "the simulation's queue never empties",
            detail: String::new(),
        })
    }

    pub(crate) fn faulty(&self) -> bool {
        self.now_ms <= self.load_until_ms + 1_000
    }

    fn at(&mut self, at: u64, task: Task) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.tasks.insert(seq, task);
        self.queue.push(Reverse((at, seq)));
    }

    pub(crate) fn after(&mut self, delay: u64, task: Task) {
        self.at(self.now_ms + delay, task);
    }

    pub fn note(&mut self, line: String) {
        if self.config.trace {
            self.trace.push(format!("{:>7} {line}", self.now_ms));
        }
    }

    /// Does one task; true when the bank is quiet after the load.
    fn step(&mut self, task: Task) -> anyhow::Result<bool> {
        match task {
            Task::Submit(op) => self.submit(op)?,
            Task::StepUpRead { attempt, epoch } => self.step_up_read(attempt, epoch)?,
            Task::StepUpWrite {
                attempt,
                epoch,
                auth_epoch,
                tried,
            } => self.step_up_write(attempt, epoch, auth_epoch, tried)?,
            Task::SteppedUp {
                attempt,
                epoch,
                verdict,
            } => self.stepped_up(attempt, epoch, verdict)?,
            Task::Certify { attempt, epoch } => self.certify(attempt, epoch)?,
            Task::Await {
                attempt,
                epoch,
                deadline,
            } => self.await_outcome(attempt, epoch, deadline)?,
            Task::Consume { node, group } => {
                self.consume(node, group)?;
                let delay = self.rng.random_range(1..=50);
                self.after(delay, Task::Consume { node, group });
            }
            Task::Relay { node } => {
                self.relay(node)?;
                let delay = self.rng.random_range(1..=30);
                self.after(delay, Task::Relay { node });
            }
            Task::Sweep => {
                self.sweep()?;
                self.after(1_000, Task::Sweep);
            }
            Task::SweepWrite { ids, epoch } => self.sweep_write(ids, epoch)?,
            Task::ClockJump { ms } => {
                self.wall_jumped_ms += ms;
                self.note(format!("the wall clock jumps {ms} ms"));
            }
            Task::Restart { node } => {
                self.nodes[node].restart();
                let name = self.nodes[node].name;
                self.note(format!("{name} restarts"));
            }
            Task::Check => {
                if self.quiet()? {
                    return Ok(true);
                }
                self.after(500, Task::Check);
            }
        }
        Ok(false)
    }

    fn maybe_crash(&mut self) {
        if self.rng.random_bool(self.faults.crash) {
            let node = self.rng.random_range(0..self.nodes.len());
            self.crash(node);
        }
    }

    fn crash(&mut self, node: usize) {
        if !self.nodes[node].up {
            return;
        }
        self.nodes[node].crash();
        let downtime = self.rng.random_range(100..=3_000);
        let name = self.nodes[node].name;
        self.note(format!("{name} crashes, down {downtime} ms"));
        self.after(downtime, Task::Restart { node });
    }

    /// One batch of one consumer group: the real inbox and handler in one transaction, the
    /// position committed after it (or before it, with the injection); crashes drawn inside.
    fn consume(&mut self, node: usize, group: usize) -> anyhow::Result<()> {
        if !self.nodes[node].up {
            return Ok(());
        }
        if self.faulty() && self.rng.random_bool(self.faults.rewind) {
            self.nodes[node].groups[group].fetched.clear();
            let name = self.nodes[node].groups[group].name;
            self.note(format!("{name} rereads from its committed positions"));
        }
        let Some((partition, from, batch)) = self.next_batch(node, group) else {
            return Ok(());
        };
        let next = from + batch.len();
        let name = self.nodes[node].groups[group].name;
        let early = ambient::armed(Injection::PositionBeforeEffect);
        if early {
            self.bus.commit(name, &partition, next);
        }
        let decoded: Vec<_> = batch
            .iter()
            .filter_map(Delivery::decode)
            .filter(|envelope| {
                self.nodes[node].groups[group]
                    .consumer
                    .wants(&envelope.event)
            })
            .collect();
        let count = decoded.len();
        let crash = self.faulty() && self.rng.random_bool(self.faults.crash_in_step);
        let Node { conn, groups, .. } = &mut self.nodes[node];
        let consumer = &groups[group].consumer;
        if !decoded.is_empty() {
            if crash && self.rng.random_bool(0.5) {
                crashed_transaction(conn, |conn| consumer.apply(conn, decoded))?;
                self.note(format!("{name} crashes applying {count} events"));
                self.crash(node);
                return Ok(());
            }
            if let Err(error) = transaction(conn, |conn| consumer.apply(conn, decoded)) {
                self.note(format!("{name} failed a batch: {error:#}"));
                self.nodes[node].groups[group].fetched.clear();
                return Ok(());
            }
            self.touched |= node == ACCOUNT || node == MYPAGE;
        }
        self.nodes[node].groups[group]
            .fetched
            .insert(partition.clone(), next);
        if crash {
            self.note(format!("{name} crashes before committing its position"));
            self.crash(node);
            return Ok(());
        }
        self.note(format!(
            "{name} applied {count} of {} from {}/{} at {from}",
            batch.len(),
            partition.topic,
            partition.index
        ));
        self.bus.commit(name, &partition, next);
        Ok(())
    }

    /// A partition with records the group has not read (drawn among them) and up to
    /// `max_batch` of them.
    fn next_batch(
        &mut self,
        node: usize,
        group: usize,
    ) -> Option<(Partition, usize, Vec<Delivery>)> {
        let topics = self.nodes[node].groups[group].topics;
        let name = self.nodes[node].groups[group].name;
        let unread: Vec<(Partition, usize)> = self
            .bus
            .partitions_of(topics)
            .into_iter()
            .filter_map(|partition| {
                let fetched = self.nodes[node].groups[group].fetched.get(&partition);
                let from = fetched
                    .copied()
                    .unwrap_or(self.bus.committed(name, &partition));
                (from < self.bus.len(&partition)).then_some((partition, from))
            })
            .collect();
        if unread.is_empty() {
            return None;
        }
        let (partition, from) = unread[self.rng.random_range(0..unread.len())].clone();
        let count = self.rng.random_range(1..=self.faults.max_batch);
        let batch = self.bus.read(&partition, from, count);
        Some((partition, from, batch))
    }

    /// Ships committed outbox rows past the watermark to the bus, then deletes them; a crash
    /// between the two ships them again later (the bus then holds them twice).
    fn relay(&mut self, node: usize) -> anyhow::Result<()> {
        if !self.nodes[node].up {
            return Ok(());
        }
        let after = self.nodes[node].shipped_to;
        let rows: Vec<(i64, String, String, String, String)> =
            now(self.nodes[node].conn.fetch_all(
                "SELECT seq, id, topic, key, body FROM outbox WHERE seq > $1 ORDER BY seq LIMIT 64",
                onlinebank_core::args![after],
            ))??;
        let Some(last) = rows.last().map(|row| row.0) else {
            return Ok(());
        };
        let shipped = rows.len();
        for (_, id, topic, key, body) in rows {
            self.bus.publish(Record {
                id,
                topic,
                key,
                body,
            })?;
        }
        self.nodes[node].shipped_to = last;
        let name = self.nodes[node].name;
        if self.faulty() && self.rng.random_bool(self.faults.crash_in_step) {
            self.note(format!(
                "{name} relay shipped {shipped} and crashed before deleting"
            ));
            self.crash(node);
            return Ok(());
        }
        transaction(&mut self.nodes[node].conn, |conn| {
            now(conn.execute(
                "DELETE FROM outbox WHERE seq <= $1",
                onlinebank_core::args![last],
            ))??;
            Ok(())
        })?;
        self.note(format!("{name} relay shipped {shipped}"));
        Ok(())
    }

    /// After the load: every node up, and nothing left to do (no saga in flight, no outbox
    /// row, every group at the end of its partitions, no request unfinished).
    fn quiet(&mut self) -> anyhow::Result<bool> {
        if self.faulty() {
            return Ok(false);
        }
        for node in 0..self.nodes.len() {
            if !self.nodes[node].up {
                self.nodes[node].restart();
            }
        }
        Ok(oracle::unquiet(self).is_none())
    }

    /// Whether a saga task is still queued.
    pub fn sagas_in_flight(&self) -> bool {
        self.tasks.values().any(|task| {
            matches!(
                task,
                Task::Submit(_)
                    | Task::SteppedUp { .. }
                    | Task::Certify { .. }
                    | Task::Await { .. }
                    | Task::SweepWrite { .. }
            )
        })
    }
}

/// The roles with the real migrations and consumers: request (outcomes), account (requests and
/// transfer debits), history and mypage.
fn nodes() -> anyhow::Result<Vec<Node>> {
    let mut request = Node::new("request", &onlinebank_request::migrations(), true)?;
    let (group, topics, outcomes) = onlinebank_request::sim::projection();
    request.consume(group, topics, outcomes);
    let mut account = Node::new("account", &onlinebank_account::migrations(), true)?;
    let rules = onlinebank_account::domain::Rules {
        max_amount: onlinebank_core::settings::defaults::MAX_AMOUNT,
        daily_limit: onlinebank_core::money::Won::try_from(
            onlinebank_core::settings::defaults::DAILY_LIMIT,
        )?,
    };
    for (group, topics, handler) in
        onlinebank_account::projections(rules, onlinebank_core::time::BankTimeZone::default())
    {
        account.consume(group, topics, handler);
    }
    let mut history = Node::new("history", &onlinebank_history::migrations(), false)?;
    let (group, topics, ledger) = onlinebank_history::projection();
    history.consume(group, topics, ledger);
    let mut mypage = Node::new("mypage", &onlinebank_mypage::migrations(), false)?;
    let (group, topics, read_model) = onlinebank_mypage::projection();
    mypage.consume(group, topics, read_model);
    let auth = Node::new("auth", &onlinebank_auth::migrations(), false)?;
    Ok(vec![request, account, history, mypage, auth])
}
