//! The deterministic simulator: the bank's real consumers, store writes and reads (request's
//! saga writes and sweeper, account's decisions, history's ledger, mypage's read model, the
//! inbox and outbox rules) on in-memory SQLite databases with the roles' real migrations, under
//! ONE seeded random source and a simulated clock, with crashes, redelivery, reordering across
//! partitions and slow writes. The same seed replays the same run, byte for byte.
//!
//! See docs/simulation.md for what is simulated, what is not, and the rules checked.

pub mod auth;
pub mod bus;
pub mod node;
pub mod oracle;
pub mod saga;
pub mod workload;
pub mod world;

use onlinebank_core::ambient::Injection;
pub use world::{Config, Violation};

/// What one seed's run came to.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub ops: usize,
    pub steps: u64,
    pub events: usize,
    pub violation: Option<Violation>,
    /// The run's trace lines (with `Config::trace`).
    pub trace: Vec<String>,
}

/// Runs the bank once for `seed`.
pub fn run(seed: u64, config: &Config) -> Report {
    let (mut world, _entered) = match world::World::new(seed, config.clone()) {
        Ok(made) => made,
        Err(error) => {
            return Report {
                seed,
                ops: 0,
                steps: 0,
                events: 0,
                violation: Some(Violation {
                    invariant: "the simulated bank starts",
                    detail: format!("{error:#}"),
                }),
                trace: Vec::new(),
            }
        }
    };
    let violation = world.run().err();
    if let Some(violation) = &violation {
        world.note(format!(
            "VIOLATION {}: {}",
            violation.invariant, violation.detail
        ));
    }
    Report {
        seed,
        ops: world.ops.len(),
        steps: world.steps,
        events: world.bus.published(),
        violation,
        trace: std::mem::take(&mut world.trace),
    }
}

/// The injections by name, for the command line.
pub fn injection(name: &str) -> anyhow::Result<Injection> {
    Injection::named(name).ok_or_else(|| {
        let known: Vec<&str> = Injection::ALL
            .iter()
            .map(|injection| injection.name())
            .collect();
        anyhow::anyhow!("no injection {name:?}; known: {}", known.join(", "))
    })
}
