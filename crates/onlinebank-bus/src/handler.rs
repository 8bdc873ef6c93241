//! The one way a role folds events into its database: each batch in ONE transaction, every event
//! decoded (an undecodable one is logged and skipped), checked against the role's inbox (a
//! redelivered one is skipped) and handed to the role's [`EventHandler::apply`]; the group's
//! position moves only after the commit (see [`crate::consumer::run`]).

use crate::consumer::{self, ConsumerGroup};
use crate::Delivery;
use onlinebank_core::ambient::{armed, Injection};
use onlinebank_core::db::{BoxFuture, Conn, Db};
use onlinebank_core::event::Envelope;
use onlinebank_core::trace::CallContext;
use std::time::SystemTime;

/// What a role does with the events it consumes.
pub trait EventHandler: Clone + Send + Sync + 'static {
    /// Whether the role acts on `event` at all: the others only move the group's position (they
    /// are neither recorded in the inbox nor handed to [`EventHandler::apply`]).
    fn wants(&self, _event: &onlinebank_core::event::Event) -> bool {
        true
    }

    /// Applies the batch's events seen for the first time, in bus order, inside the batch's
    /// transaction: a few statements per batch, not per event (on PostgreSQL each statement is a
    /// round trip; see [`onlinebank_core::db::Engine::json_rows`]).
    fn apply<'c>(
        &'c self,
        conn: &'c mut Conn,
        events: &'c [Envelope],
    ) -> BoxFuture<'c, anyhow::Result<()>>;

    /// Runs last in the batch's transaction, with every envelope of the batch (redelivered ones
    /// included).
    fn finish<'c>(
        &'c self,
        _conn: &'c mut Conn,
        _batch: &'c [Envelope],
    ) -> BoxFuture<'c, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Runs after the batch committed, with every envelope of the batch.
    fn committed(&self, _batch: &[Envelope]) {}
}

/// Feeds the group's events into `db` through `handler` until the group's shutdown.
pub async fn run<P: EventHandler>(consumer: ConsumerGroup, db: Db, handler: P) {
    let (role, group) = (consumer.role, consumer.name);
    // From an event's publication (its publisher's transaction) to this group's commit of it.
    let delay = metrics::histogram!("onlinebank_event_delay_seconds", "group" => group);
    consumer::run(consumer, move |batch| {
        let db = db.clone();
        let handler = handler.clone();
        let delay = delay.clone();
        async move {
            let decoded: Vec<Envelope> = batch
                .iter()
                .filter_map(Delivery::decode)
                .filter(|envelope| handler.wants(&envelope.event))
                .collect();
            if decoded.is_empty() {
                // Nothing the role acts on: no transaction, only the position moves.
                return Ok(());
            }
            let applying = handler.clone();
            let seen = db
                .write(move |conn| Box::pin(apply_batch(conn, applying, role, group, decoded)))
                .await
                .map_err(|error| anyhow::anyhow!("{group}: applying events: {error}"))?;
            for envelope in &seen {
                if let Some(seconds) = onlinebank_core::time::seconds_since(&envelope.occurred_at) {
                    delay.record(seconds);
                }
            }
            handler.committed(&seen);
            Ok(())
        }
    })
    .await
}

/// Applies `decoded` (a batch's events the handler wants, in bus order) inside the caller's
/// transaction: the ones the inbox has not seen go to [`EventHandler::apply`], then every one to
/// [`EventHandler::finish`]. Returns them fresh first, then redelivered.
pub async fn apply_batch<P: EventHandler>(
    conn: &mut Conn,
    handler: P,
    role: &'static str,
    group: &str,
    decoded: Vec<Envelope>,
) -> anyhow::Result<Vec<Envelope>> {
    let ids: Vec<_> = decoded.iter().map(|envelope| envelope.id).collect();
    let mut first = crate::inbox::first_deliveries(conn, &ids).await?;
    // `remove`: a batch holding the same event twice applies it once.
    let (fresh, redelivered): (Vec<_>, Vec<_>) = decoded.into_iter().partition(|envelope| {
        first.remove(&envelope.id.to_string()) || armed(Injection::InboxSkipped)
    });
    if !fresh.is_empty() {
        let start = SystemTime::now();
        handler.apply(conn, &fresh).await?;
        let applying = Applying {
            role,
            group,
            start,
            end: SystemTime::now(),
        };
        for envelope in &fresh {
            applying.trace(envelope);
        }
    }
    let seen: Vec<Envelope> = fresh.into_iter().chain(redelivered).collect();
    handler.finish(conn, &seen).await?;
    Ok(seen)
}

/// A batch's application by one consumer group, as its events' spans tell it.
struct Applying<'g> {
    role: &'static str,
    group: &'g str,
    start: SystemTime,
    end: SystemTime,
}

impl Applying<'_> {
    /// `envelope`'s span of this group (the customer call's request id and trace continued from
    /// the envelope): one debug line (target `onlinebank::events`) in it, and its export when
    /// spans are exported, so a call can be followed into every role that consumed what it
    /// caused.
    fn trace(&self, envelope: &Envelope) {
        let logged = tracing::enabled!(target: "onlinebank::events", tracing::Level::DEBUG);
        if !logged && !onlinebank_core::otel::enabled() {
            return;
        }
        let context = envelope.consumed_by(self.group);
        let event = envelope.event.type_name();
        if logged {
            self.log(envelope, &context);
        }
        use onlinebank_core::otel::Attribute::Text;
        onlinebank_core::otel::record(onlinebank_core::otel::FinishedSpan {
            name: format!("apply {event}"),
            kind: onlinebank_core::otel::SpanKind::Consumer,
            role: self.role,
            attributes: vec![
                ("onlinebank.group", Text(self.group.to_owned())),
                ("onlinebank.event", Text(event.to_owned())),
                (
                    "onlinebank.request",
                    Text(envelope.correlation_id.to_string()),
                ),
                (
                    "onlinebank.request_id",
                    Text(context.request_id.to_string()),
                ),
            ],
            context,
            start: self.start,
            end: self.end,
        });
    }

    fn log(&self, envelope: &Envelope, context: &CallContext) {
        let event = envelope.event.type_name();
        tracing::debug_span!(
            target: "onlinebank::events",
            "event",
            role = self.role,
            group = self.group,
            request_id = %context.request_id,
            trace_id = %context.trace_id,
            span_id = %context.span_id,
        )
        .in_scope(|| {
            tracing::debug!(
                target: "onlinebank::events",
                event,
                request = %envelope.correlation_id,
                parent_id = context.parent_id.map(|id| id.to_string()),
                "applied {event}"
            );
        });
    }
}
