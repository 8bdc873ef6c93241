//! How a role that publishes or consumes events is put together, the same way for every role:
//! its database with the bus's tables ([`Wiring::open_db`]), the relay of what it publishes
//! ([`Wiring::publish`]), the consumer of what it reads ([`Wiring::consume`]) and its answer to
//! `GET /internal/quiet` ([`Wiring::quiet`]).

use crate::consumer::ConsumerGroup;
use crate::handler::EventHandler;
use crate::outbox::Relay;
use crate::quiet::RoleQuiet;
use crate::Bus;
use onlinebank_core::db::{Db, Migrations};
use onlinebank_core::{Role, RoleContext};

pub use crate::consumer::Consumes;

/// One role's place in the process and on the bus.
#[derive(Clone, Copy)]
pub struct Wiring<'a> {
    pub ctx: &'a RoleContext,
    pub bus: &'a Bus,
    pub role: Role,
}

impl<'a> Wiring<'a> {
    pub fn new(ctx: &'a RoleContext, bus: &'a Bus, role: Role) -> Self {
        Self { ctx, bus, role }
    }

    /// The role's consumer group and publisher name: the role's own name.
    pub fn name(&self) -> &'static str {
        self.role.as_str()
    }

    /// Opens the role's database and applies its migrations with the bus's tables.
    pub async fn open_db(&self, migrations: &Migrations) -> anyhow::Result<Db> {
        self.ctx
            .open_db(self.role, &crate::schema::with_bus(migrations)?)
            .await
    }

    /// Starts the relay of `db`'s outbox to `topics` (see [`crate::outbox`]) and returns it, for
    /// the role's writers to wake after they enqueued events.
    pub fn publish(&self, db: &Db, topics: &'static [&'static str]) -> Relay {
        let relay = Relay::new(self.name(), topics, db.clone(), self.bus.clone());
        self.ctx
            .tasks
            .spawn(relay.clone().run(self.ctx.shutdown.clone()));
        relay
    }

    /// Starts consuming into `db` with `handler` until shutdown: the role's consumer group
    /// reads what `consumes` names, one transaction per batch.
    pub fn consume<P: EventHandler>(&self, db: &Db, consumes: Consumes, handler: P) {
        self.consume_as(self.name(), db, consumes, handler);
    }

    /// [`Wiring::consume`] as a consumer group of its own, `group` (a role that reads another
    /// publisher's topics beside its own: in the embedded log one group reads one outbox).
    pub fn consume_as<P: EventHandler>(
        &self,
        group: &'static str,
        db: &Db,
        consumes: Consumes,
        handler: P,
    ) {
        let group = ConsumerGroup {
            bus: self.bus.clone(),
            role: self.name(),
            name: group,
            consumes,
            shutdown: self.ctx.shutdown.clone(),
        };
        self.ctx
            .tasks
            .spawn(crate::handler::run(group, db.clone(), handler));
    }

    /// The role's unsent events and consumer lag, for `GET /internal/quiet`; `relay` when the
    /// role publishes.
    pub fn quiet(&self, consumes: Consumes, relay: Option<&Relay>) -> RoleQuiet {
        let quiet = RoleQuiet::consumer(self.bus, self.name(), consumes.topics);
        match relay {
            Some(relay) => quiet.publishing(relay),
            None => quiet,
        }
    }
}
