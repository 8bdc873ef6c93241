//! The account role: accounts and balances, the source of truth.
//!
//! It consumes AuthCertified from the request role and, for a whole batch in ONE database
//! transaction, checks owner, status, funds and limits ([`domain::decide`]), updates balances,
//! records each event id in its inbox and writes each outcome (MoneyDeposited, MoneyWithdrawn,
//! AccountOpened, AccountClosed or AccountRequestCancelled) to its outbox. Requests for one
//! account are applied one after another, in bus order, so concurrent withdrawals cannot
//! overdraw.

pub mod domain;
mod store;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use domain::Settlement;
use domain::{Account, Rules};
use onlinebank_bus::handler::EventHandler;
use onlinebank_bus::outbox::{Outgoing, Relay};
use onlinebank_bus::wiring::{Consumes, Wiring};
use onlinebank_bus::Bus;
use onlinebank_core::db::{BoxFuture, Conn, Db};
use onlinebank_core::event::{
    AccountChanged, AccountRequestCancelled, AuthCertified, Envelope, Event, TransferCredited,
    TransferDebited, TransferReversed, TOPIC_ACCOUNTS, TOPIC_REQUESTS,
};
use onlinebank_core::ids::AccountNo;
use onlinebank_core::internal::{self, AccountsAnswer, ListedAccount};
use onlinebank_core::time::{BankTimeZone, Day};
use onlinebank_core::{ApiError, Reason, Role, RoleContext};
use std::collections::HashMap;

/// The certified requests, up to 256 per transaction.
const CONSUMES: Consumes = Consumes {
    topics: &[TOPIC_REQUESTS],
    batch: 256,
};

/// Its own transfer debits, whose second leg it makes, up to 256 per transaction; read as a
/// consumer group of their own.
const SETTLES: Consumes = Consumes {
    topics: &[TOPIC_ACCOUNTS],
    batch: 256,
};
const SETTLES_GROUP: &str = "account-transfers";

/// Opens account's database, starts its consumer and relay, and returns its router.
pub async fn build(ctx: &RoleContext, bus: &Bus) -> anyhow::Result<onlinebank_core::RoleParts> {
    let wiring = Wiring::new(ctx, bus, Role::Account);
    let db = wiring.open_db(&migrations()).await?;
    let relay = wiring.publish(&db, &[TOPIC_ACCOUNTS]);
    let quiet = wiring
        .quiet(CONSUMES, Some(&relay))
        .also_consuming(SETTLES_GROUP, SETTLES.topics);
    let decider = Decider {
        group: wiring.name(),
        rules: Rules {
            max_amount: ctx.settings.max_amount,
            daily_limit: ctx.settings.account.daily_limit,
        },
        time_zone: ctx.settings.account.time_zone,
    };
    let accounts = Accounts {
        decider: decider.clone(),
        relay: Some(relay.clone()),
    };
    wiring.consume(&db, CONSUMES, accounts.clone());
    let settles = Accounts {
        decider: Decider {
            group: SETTLES_GROUP,
            ..decider
        },
        relay: Some(relay),
    };
    wiring.consume_as(SETTLES_GROUP, &db, SETTLES, settles);
    Ok(onlinebank_core::RoleParts {
        db: Some(db.clone()),
        router: ctx
            .internal(Router::new().route(internal::ACCOUNTS, get(list_accounts)))
            .with_state(db)
            .merge(onlinebank_core::quiet::router(
                quiet.probe(),
                ctx.settings.internal_token().into(),
            )),
    })
}

/// The account role's projection: each certified request decided and applied, its outcome in the
/// outbox of the same transaction.
#[derive(Clone)]
struct Accounts {
    decider: Decider,
    /// Woken after a commit; none where no relay runs (the simulator ships the outbox itself).
    relay: Option<Relay>,
}

/// The account role's consumer groups and what each applies, for the deterministic simulator:
/// `account` (certified requests) and `account-transfers` (transfer debits, whose second leg it
/// makes), each the real [`EventHandler`] of the role.
pub fn projections(
    rules: Rules,
    time_zone: BankTimeZone,
) -> [(&'static str, &'static [&'static str], impl EventHandler); 2] {
    let decider = |group| Decider {
        group,
        rules,
        time_zone,
    };
    let accounts = |group| Accounts {
        decider: decider(group),
        relay: None,
    };
    [
        (
            Role::Account.as_str(),
            CONSUMES.topics,
            accounts(Role::Account.as_str()),
        ),
        (SETTLES_GROUP, SETTLES.topics, accounts(SETTLES_GROUP)),
    ]
}

/// What deciding a batch needs besides the batch.
#[derive(Clone)]
struct Decider {
    /// The consumer group this instance applies events for (it names their spans).
    group: &'static str,
    rules: Rules,
    time_zone: BankTimeZone,
}

impl EventHandler for Accounts {
    /// Certified requests and transfer debits; its other outcomes only move the position.
    fn wants(&self, event: &Event) -> bool {
        matches!(event, Event::AuthCertified(_) | Event::TransferDebited(_))
    }

    fn apply<'c>(
        &'c self,
        conn: &'c mut Conn,
        events: &'c [Envelope],
    ) -> BoxFuture<'c, anyhow::Result<()>> {
        Box::pin(apply(conn, events, &self.decider))
    }

    /// The outcomes are committed: the relay ships them now.
    fn committed(&self, _batch: &[Envelope]) {
        if let Some(relay) = &self.relay {
            relay.wake();
        }
    }
}

/// What a batch asks of the account role, in bus order.
enum Work<'e> {
    /// A certified request, with the bank's day it was certified on.
    Request(&'e AuthCertified, Day),
    /// A transfer's debit, whose second leg is to be made.
    Settle(&'e TransferDebited),
}

impl Work<'_> {
    /// The accounts this work reads and writes.
    fn accounts(&self) -> Vec<&str> {
        match self {
            Work::Request(request, _) => vec![request.account_no.as_str()],
            Work::Settle(debited) => {
                vec![debited.account_no.as_str(), debited.to_account_no.as_str()]
            }
        }
    }
}

/// One account as a batch holds it: as loaded (None: not stored) and as it is now.
struct Held {
    loaded: Option<Account>,
    now: Option<Account>,
}

/// Decides the batch's work one item after another, in bus order, each on the accounts as the
/// ones before it left them; then writes every changed account once and every outcome, in bus
/// order, to the outbox (a handful of statements for the whole batch).
async fn apply(conn: &mut Conn, events: &[Envelope], decider: &Decider) -> anyhow::Result<()> {
    let work: Vec<(Work<'_>, &Envelope)> = events
        .iter()
        .filter_map(|envelope| match &envelope.event {
            Event::AuthCertified(request) => Some((
                Work::Request(request, certified_on(decider.time_zone, envelope)),
                envelope,
            )),
            Event::TransferDebited(debited) => Some((Work::Settle(debited), envelope)),
            _ => None,
        })
        .collect();
    let mut held = load(conn, work.iter().map(|(item, _)| item)).await?;
    let mut outcomes = Vec::with_capacity(work.len());
    for (item, cause) in work {
        let event = match item {
            Work::Request(request, today) => {
                let current = held_now(&mut held, &request.account_no)?;
                decide(current, request, &decider.rules, today)
            }
            Work::Settle(debited) => settle(&mut held, debited)?,
        };
        // The outcome goes on in the trace of the call that caused it, as a child of this
        // group's span of the event it answers.
        let call = Some(cause.consumed_by(decider.group).publishing());
        outcomes.push(Outgoing { event, call });
    }
    save(conn, &held).await?;
    onlinebank_bus::outbox::enqueue_all(conn, outcomes).await?;
    Ok(())
}

/// The accounts `work` touches, as stored, in ONE statement.
async fn load<'w>(
    conn: &mut Conn,
    work: impl Iterator<Item = &'w Work<'w>>,
) -> anyhow::Result<HashMap<String, Held>> {
    let mut wanted: Vec<&str> = work.flat_map(Work::accounts).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut held: HashMap<String, Held> = wanted
        .iter()
        .map(|account_no| {
            let empty = Held {
                loaded: None,
                now: None,
            };
            ((*account_no).to_owned(), empty)
        })
        .collect();
    for stored in store::load_all(conn, &wanted).await? {
        let account_no = stored.account_no.as_str().to_owned();
        held.insert(
            account_no,
            Held {
                loaded: Some(stored.clone()),
                now: Some(stored),
            },
        );
    }
    Ok(held)
}

fn held_now<'h>(
    held: &'h mut HashMap<String, Held>,
    account_no: &AccountNo,
) -> anyhow::Result<&'h mut Option<Account>> {
    held.get_mut(account_no.as_str())
        .map(|held| &mut held.now)
        .ok_or_else(|| anyhow::anyhow!("account {account_no} was not looked up"))
}

/// Writes every account the batch changed, in one order for every batch (two replicas' batches
/// never wait on each other crosswise).
async fn save(conn: &mut Conn, held: &HashMap<String, Held>) -> anyhow::Result<()> {
    let mut created = Vec::new();
    let mut updated = Vec::new();
    for account in held.values() {
        match (&account.loaded, &account.now) {
            (None, Some(now)) => created.push(now),
            (Some(loaded), Some(now)) if now != loaded => {
                updated.push(store::Update { after: now, loaded })
            }
            _ => {}
        }
    }
    created.sort_unstable_by(|a, b| a.account_no.as_str().cmp(b.account_no.as_str()));
    updated.sort_unstable_by(|a, b| a.after.account_no.as_str().cmp(b.after.account_no.as_str()));
    store::save_all(conn, &created, &updated).await?;
    Ok(())
}

/// Makes the second leg of `debited` on the accounts as the batch holds them: the target
/// credited, or the money back on the source; returns the event to publish. The source is in
/// the bank's books whatever happened since the debit (it cannot close while money is in flight),
/// so an [`domain::Unsettleable`] transfer fails the batch rather than lose the money.
fn settle(held: &mut HashMap<String, Held>, debited: &TransferDebited) -> anyhow::Result<Event> {
    let source = held_now(held, &debited.account_no)?.clone();
    let target = held_now(held, &debited.to_account_no)?.clone();
    let settlement = domain::settle(source.as_ref(), target.as_ref(), debited)?;
    Ok(match settlement {
        Settlement::Credited { source, target } => {
            tracing::debug!(request = %debited.request_id, to = %target.account_no, "transfer credited");
            let event = Event::TransferCredited(TransferCredited {
                request_id: debited.request_id,
                customer_id: target.customer_id.clone(),
                account_no: target.account_no.clone(),
                from_account_no: debited.account_no.clone(),
                amount: debited.amount,
                balance: target.balance,
                version: target.version,
                source_balance: debited.balance,
                source_version: debited.version,
            });
            *held_now(held, &debited.to_account_no)? = Some(target);
            *held_now(held, &debited.account_no)? = Some(source);
            event
        }
        Settlement::Reversed { source, reason } => {
            tracing::debug!(request = %debited.request_id, reason = reason.code(), "transfer reversed");
            let event = Event::TransferReversed(TransferReversed {
                request_id: debited.request_id,
                customer_id: source.customer_id.clone(),
                account_no: source.account_no.clone(),
                to_account_no: debited.to_account_no.clone(),
                amount: debited.amount,
                balance: source.balance,
                version: source.version,
                reason,
                message: reason.legacy_message().to_owned(),
            });
            *held_now(held, &debited.account_no)? = Some(source);
            event
        }
    })
}

/// The bank's calendar day the request was certified on (when it was certified, not when it is
/// applied: a redelivery decides the same). An envelope whose time does not parse counts on
/// today's.
fn certified_on(time_zone: BankTimeZone, envelope: &Envelope) -> Day {
    time_zone
        .day_of(&envelope.occurred_at)
        .unwrap_or_else(|| time_zone.today())
}

/// Decides one certified request on `current` and moves it to the account's new state; returns
/// the outcome to publish.
fn decide(
    current: &mut Option<Account>,
    request: &AuthCertified,
    rules: &Rules,
    today: Day,
) -> Event {
    let decided = domain::decide(current.as_ref(), request, rules, today).and_then(|change| {
        // A transfer without a target has no event (decide refuses it before).
        let event = changed_event(request, &change).ok_or(Reason::AccountNotFound)?;
        Ok((change, event))
    });
    match decided {
        Ok((change, event)) => {
            // Each change moves the account's version by exactly one (1 on open).
            let before = current.as_ref().map_or(0, |account| account.version);
            debug_assert_eq!(change.after.version, before + 1);
            tracing::debug!(
                account = %request.account_no,
                request = %request.request_id,
                kind = request.kind.as_str(),
                amount = change.amount.won(),
                balance = change.after.balance.won(),
                "request applied"
            );
            *current = Some(change.after);
            event
        }
        Err(reason) => {
            tracing::debug!(
                account = %request.account_no,
                request = %request.request_id,
                kind = request.kind.as_str(),
                reason = reason.code(),
                "request refused"
            );
            Event::AccountRequestCancelled(AccountRequestCancelled {
                request_id: request.request_id,
                customer_id: request.customer_id.clone(),
                kind: request.kind,
                account_no: request.account_no.clone(),
                amount: request.amount,
                reason,
                message: reason.legacy_message().to_owned(),
                allowed_today: (reason == Reason::DailyLimitExceeded).then(|| {
                    current.as_ref().map_or(rules.daily_limit, |account| {
                        account.allowed_on(today, rules.daily_limit)
                    })
                }),
            })
        }
    }
}

/// The event of an applied request: a transfer's debit names its target (None: a transfer
/// without one).
fn changed_event(request: &AuthCertified, change: &domain::Change) -> Option<Event> {
    let changed = AccountChanged {
        request_id: request.request_id,
        customer_id: request.customer_id.clone(),
        account_no: request.account_no.clone(),
        amount: change.amount,
        balance: change.after.balance,
        version: change.after.version,
    };
    match (
        &request.to_account_no,
        Event::account_changed(request.kind, changed),
    ) {
        (_, Some(event)) => Some(event),
        (Some(to_account_no), None) => Some(Event::TransferDebited(TransferDebited {
            request_id: request.request_id,
            customer_id: request.customer_id.clone(),
            account_no: request.account_no.clone(),
            to_account_no: to_account_no.clone(),
            amount: change.amount,
            balance: change.after.balance,
            version: change.after.version,
        })),
        (None, None) => None,
    }
}

async fn list_accounts(State(db): State<Db>) -> Result<Json<AccountsAnswer>, ApiError> {
    let accounts = store::all(&mut db.read().await?).await?;
    let items = accounts
        .into_iter()
        .map(|account| ListedAccount {
            account_no: account.account_no,
            customer_id: account.customer_id,
            balance: account.balance,
            status: account.status,
            version: account.version,
            in_flight: account.in_flight,
        })
        .collect();
    Ok(Json(AccountsAnswer { items }))
}

/// account's migrations, for each engine (see [`onlinebank_core::db::migrate`]).
pub fn migrations() -> onlinebank_core::db::Migrations {
    onlinebank_core::expand_migrations![
        (1, "init", "0001_init.sql"),
        (2, "daily outflow", "0002_daily_outflow.sql"),
        (3, "transfers in flight", "0003_transfers_in_flight.sql"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use onlinebank_core::event::WriteKind;
    use onlinebank_core::ids::RequestId;
    use onlinebank_core::ids::{AccountNo, CustomerId};
    use onlinebank_core::money::Won;
    use onlinebank_core::trace::CallContext;
    use onlinebank_core::Reason;

    /// A batch is decided request after request, each on the account as the ones before it
    /// left it (an overdraft after deposits is refused, the withdrawal after it is not); every
    /// changed account is stored once, every outcome published in the batch's order.
    #[tokio::test]
    async fn a_batch_decides_each_request_on_the_state_the_previous_ones_left_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("account.db").display().to_string();
        batch_behaviour(Db::open(&url, "account").await.unwrap()).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (ONLINEBANK_TEST_POSTGRES): ./.ci/run runs it"]
    async fn a_batch_decides_each_request_on_the_state_the_previous_ones_left_on_postgres() {
        batch_behaviour(onlinebank_core::db::testing::postgres_db("account", "account").await)
            .await;
    }

    #[tokio::test]
    async fn a_transfer_is_debited_then_credited_or_returned_by_its_second_leg_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("account.db").display().to_string();
        transfer_behaviour(Db::open(&url, "account").await.unwrap()).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (ONLINEBANK_TEST_POSTGRES): ./.ci/run runs it"]
    async fn a_transfer_is_debited_then_credited_or_returned_by_its_second_leg_on_postgres() {
        transfer_behaviour(onlinebank_core::db::testing::postgres_db("account", "account").await)
            .await;
    }

    /// An account opened and transferring out in the same batch keeps its money in flight (the
    /// new row is written with it), so the second leg finds it. Found by the simulator (seed 328
    /// of its first version): the row was inserted without it, the second leg failed for ever.
    #[tokio::test]
    async fn an_account_opened_and_transferring_in_one_batch_holds_its_money_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("account.db").display().to_string();
        let db = Db::open(&url, "account").await.unwrap();
        onlinebank_bus::schema::migrate(&db, &migrations())
            .await
            .unwrap();
        let batch = vec![
            certified(WriteKind::Open, "1001", 100),
            certified(WriteKind::Open, "2002", 5),
            transfer("1001", "2002", 70),
        ];
        apply_batch(&db, batch).await;
        let accounts = store::all(&mut db.read().await.unwrap()).await.unwrap();
        assert_eq!(in_flight(&accounts, "1001"), 70);
        let (published, seq) = published_after(&db, 0).await;
        apply_batch(&db, published[2..].to_vec()).await;
        let (legs, _) = published_after(&db, seq).await;
        assert_eq!(legs[0].event.type_name(), "TransferCredited");
        let accounts = store::all(&mut db.read().await.unwrap()).await.unwrap();
        assert_eq!(in_flight(&accounts, "1001"), 0);
    }

    /// Every outcome goes on in the trace of the event it answers, as a child of this group's
    /// span of that event; an event that came without a call starts a trace of its own.
    #[tokio::test]
    async fn outcomes_carry_the_call_of_the_event_they_answer() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("account.db").display().to_string();
        let db = Db::open(&url, "account").await.unwrap();
        onlinebank_bus::schema::migrate(&db, &migrations())
            .await
            .unwrap();
        let caller = CallContext::from_headers(&Default::default());
        let opened = Envelope {
            call: Some(caller.publishing()),
            ..certified(WriteKind::Open, "1001", 5)
        };
        let untraced = certified(WriteKind::Open, "2002", 5);
        apply_batch(&db, vec![opened.clone(), untraced]).await;
        let (published, _) = published_after(&db, 0).await;
        let call = published[0].call.clone().unwrap();
        assert_eq!(call.request_id, caller.request_id);
        assert_eq!(call.parent.trace_id, caller.trace_id);
        assert_eq!(call.parent.parent_id, opened.consumed_by("account").span_id);
        let own = published[1].call.clone().unwrap();
        assert_ne!(own.parent.trace_id, caller.trace_id);
    }

    fn transfer(from: &str, to: &str, amount: i64) -> Envelope {
        let mut envelope = certified(WriteKind::Transfer, from, amount);
        if let Event::AuthCertified(request) = &mut envelope.event {
            request.to_account_no = Some(AccountNo::parse(to).unwrap());
        }
        envelope
    }

    /// The outbox's events after `seq`, decoded, with the last seq.
    async fn published_after(db: &Db, seq: i64) -> (Vec<Envelope>, i64) {
        let rows: Vec<(i64, String)> = db
            .read()
            .await
            .unwrap()
            .fetch_all(
                "SELECT seq, body FROM outbox WHERE seq > $1 ORDER BY seq",
                onlinebank_core::args![seq],
            )
            .await
            .unwrap();
        let last = rows.last().map_or(seq, |(seq, _)| *seq);
        let events = rows
            .iter()
            .map(|(_, body)| Envelope::decode(body).unwrap())
            .collect();
        (events, last)
    }

    fn in_flight(db_accounts: &[Account], no: &str) -> i64 {
        db_accounts
            .iter()
            .find(|a| a.account_no.as_str() == no)
            .map_or(-1, |a| a.in_flight.won())
    }

    /// A debit holds the money in flight; its TransferDebited, applied by the second leg, credits
    /// an open target or returns the money from a missing one; a redelivered debit is the inbox's
    /// (not applied here twice: the handler is only given first deliveries).
    async fn transfer_behaviour(db: Db) {
        onlinebank_bus::schema::migrate(&db, &migrations())
            .await
            .unwrap();
        apply_batch(
            &db,
            vec![
                certified(WriteKind::Open, "1001", 100),
                certified(WriteKind::Open, "2002", 5),
            ],
        )
        .await;
        let (_, seq) = published_after(&db, 0).await;
        apply_batch(
            &db,
            vec![transfer("1001", "2002", 70), transfer("1001", "3003", 20)],
        )
        .await;
        let (debits, seq) = published_after(&db, seq).await;
        let names: Vec<&str> = debits.iter().map(|e| e.event.type_name()).collect();
        assert_eq!(names, ["TransferDebited", "TransferDebited"]);
        let accounts = store::all(&mut db.read().await.unwrap()).await.unwrap();
        assert_eq!(in_flight(&accounts, "1001"), 90);
        assert_eq!(balances(&db).await[0], ("1001".into(), 10, 3));
        // Closing with money in flight is refused.
        apply_batch(&db, vec![certified(WriteKind::Close, "1001", 0)]).await;
        let (refused, seq) = published_after(&db, seq).await;
        assert!(matches!(
            &refused[0].event,
            Event::AccountRequestCancelled(c) if c.reason == Reason::BalanceNotZero
        ));
        // The second leg of both debits in one batch.
        apply_batch(&db, debits).await;
        let (legs, _) = published_after(&db, seq).await;
        let names: Vec<&str> = legs.iter().map(|e| e.event.type_name()).collect();
        assert_eq!(names, ["TransferCredited", "TransferReversed"]);
        assert_eq!(legs[0].aggregate, "2002");
        assert_eq!(legs[1].aggregate, "1001");
        let accounts = store::all(&mut db.read().await.unwrap()).await.unwrap();
        assert_eq!(in_flight(&accounts, "1001"), 0);
        assert_eq!(
            balances(&db).await,
            [("1001".into(), 30, 4), ("2002".into(), 75, 2)]
        );
    }

    fn certified(kind: WriteKind, account: &str, amount: i64) -> Envelope {
        let event = Event::AuthCertified(AuthCertified {
            request_id: RequestId::generate(),
            customer_id: CustomerId::parse("1@sk.com").unwrap(),
            kind,
            account_no: AccountNo::parse(account).unwrap(),
            amount: Won::from_stored(amount).unwrap(),
            to_account_no: None,
        });
        event.into_envelope(1)
    }

    async fn apply_batch(db: &Db, events: Vec<Envelope>) {
        let rules = Rules {
            max_amount: 1_000_000,
            daily_limit: Won::from_stored(5_000_000).unwrap(),
        };
        let decider = Decider {
            group: "account",
            rules,
            time_zone: BankTimeZone::default(),
        };
        db.write(move |conn| Box::pin(async move { apply(conn, &events, &decider).await }))
            .await
            .unwrap();
    }

    async fn balances(db: &Db) -> Vec<(String, i64, i64)> {
        let accounts = store::all(&mut db.read().await.unwrap()).await.unwrap();
        accounts
            .into_iter()
            .map(|a| (a.account_no.as_str().to_owned(), a.balance.won(), a.version))
            .collect()
    }

    async fn batch_behaviour(db: Db) {
        onlinebank_bus::schema::migrate(&db, &migrations())
            .await
            .unwrap();
        apply_batch(&db, vec![certified(WriteKind::Open, "2002", 10)]).await;
        apply_batch(
            &db,
            vec![
                certified(WriteKind::Open, "1001", 100),
                certified(WriteKind::Deposit, "2002", 5),
                certified(WriteKind::Deposit, "1001", 50),
                certified(WriteKind::Withdraw, "1001", 200),
                certified(WriteKind::Withdraw, "1001", 150),
                certified(WriteKind::Open, "2002", 1),
                certified(WriteKind::Deposit, "3003", 1),
            ],
        )
        .await;
        assert_eq!(
            balances(&db).await,
            [("1001".into(), 0, 3), ("2002".into(), 15, 2)]
        );
        let bodies: Vec<(String,)> = db
            .read()
            .await
            .unwrap()
            .fetch_all("SELECT body FROM outbox ORDER BY seq", &[])
            .await
            .unwrap();
        let published: Vec<(String, String, i64, Option<Reason>)> = bodies
            .iter()
            .map(|(body,)| {
                let envelope = Envelope::decode(body).unwrap();
                let reason = match &envelope.event {
                    Event::AccountRequestCancelled(cancelled) => Some(cancelled.reason),
                    _ => None,
                };
                (
                    envelope.event.type_name().to_owned(),
                    envelope.aggregate,
                    envelope.sequence,
                    reason,
                )
            })
            .collect();
        let expected = [
            ("AccountOpened", "2002", 1, None),
            ("AccountOpened", "1001", 1, None),
            ("MoneyDeposited", "2002", 2, None),
            ("MoneyDeposited", "1001", 2, None),
            (
                "AccountRequestCancelled",
                "1001",
                3,
                Some(Reason::InsufficientFunds),
            ),
            ("MoneyWithdrawn", "1001", 4, None),
            (
                "AccountRequestCancelled",
                "2002",
                3,
                Some(Reason::AccountExists),
            ),
            (
                "AccountRequestCancelled",
                "3003",
                1,
                Some(Reason::AccountNotFound),
            ),
        ];
        let expected: Vec<(String, String, i64, Option<Reason>)> = expected
            .into_iter()
            .map(|(kind, account, sequence, reason)| {
                (kind.into(), account.into(), sequence, reason)
            })
            .collect();
        assert_eq!(published, expected);

        // A state decided on a version that is no longer stored is refused and changes nothing.
        let stale = db
            .write(|conn| {
                Box::pin(async move {
                    let loaded = store::load_all(conn, &["2002"]).await?.remove(0);
                    let stale = Account {
                        version: loaded.version - 1,
                        ..loaded.clone()
                    };
                    let after = Account {
                        version: loaded.version + 1,
                        ..loaded.clone()
                    };
                    let update = store::Update {
                        after: &after,
                        loaded: &stale,
                    };
                    store::save_all(conn, &[], &[update]).await
                })
            })
            .await;
        assert!(
            matches!(
                stale,
                Err(onlinebank_core::db::GroupError::Job(
                    onlinebank_core::db::Error::Conflict(_)
                ))
            ),
            "{stale:?}"
        );
        assert_eq!(
            balances(&db).await,
            [("1001".into(), 0, 3), ("2002".into(), 15, 2)]
        );
    }
}
