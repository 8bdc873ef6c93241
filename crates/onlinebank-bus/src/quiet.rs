//! A role's answer to `GET /internal/quiet` (see [`onlinebank_core::quiet`]): its outbox's
//! unsent events and its consumer group's lag, measured the same way by every role.

use crate::outbox::Relay;
use crate::Bus;
use onlinebank_core::quiet::{Quiet, QuietProbe};
use std::sync::Arc;

/// What one role publishes and consumes.
#[derive(Debug, Clone)]
pub struct RoleQuiet {
    bus: Bus,
    /// The role's consumer groups, each with the topics it consumes.
    groups: Vec<(&'static str, &'static [&'static str])>,
    /// The role's outbox relay, if it publishes.
    relay: Option<Relay>,
}

impl RoleQuiet {
    /// A role that consumes `topics` as `group`.
    pub fn consumer(bus: &Bus, group: &'static str, topics: &'static [&'static str]) -> Self {
        Self {
            bus: bus.clone(),
            groups: vec![(group, topics)],
            relay: None,
        }
    }

    /// The same role, which also consumes `topics` as `group`.
    pub fn also_consuming(mut self, group: &'static str, topics: &'static [&'static str]) -> Self {
        self.groups.push((group, topics));
        self
    }

    /// The same role, which also publishes through `relay`.
    pub fn publishing(mut self, relay: &Relay) -> Self {
        self.relay = Some(relay.clone());
        self
    }

    /// The role's unsent events and lag now (`pendingRequests` 0).
    pub async fn measure(&self) -> anyhow::Result<Quiet> {
        let unsent_events = match &self.relay {
            Some(relay) => relay.unsent().await?,
            None => 0,
        };
        let mut lag = 0;
        for (group, topics) in &self.groups {
            lag += self.bus.lag(group, topics).await?;
        }
        Ok(Quiet {
            unsent_events,
            lag,
            pending_requests: 0,
        })
    }

    /// [`Self::measure`] as the probe of `GET /internal/quiet`.
    pub fn probe(self) -> QuietProbe {
        Arc::new(move || {
            let role = self.clone();
            Box::pin(async move { role.measure().await })
        })
    }
}
