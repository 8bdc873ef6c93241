//! The event envelope shared by every publisher and consumer, and the typed events it carries.
//!
//! Every event travels as one JSON [`Envelope`] carrying a typed [`Event`]; the `payload` is
//! decoded once, straight into the event type its `type` names. Events are keyed by account number so one account's events stay in order.

use crate::ids::{AccountNo, CustomerId, RequestId};
use crate::money::{Balance, Won};
use crate::reason::Reason;
use crate::trace::{CallContext, CallId, EventCall, SpanId, TraceParent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Topic of the request role: AuthCertified and AuthCancelled.
pub const TOPIC_REQUESTS: &str = "onlinebank.requests";
/// Topic of the account role: account outcomes.
pub const TOPIC_ACCOUNTS: &str = "onlinebank.accounts";
/// Every topic, for creating them on a broker.
pub const TOPICS: [&str; 2] = [TOPIC_REQUESTS, TOPIC_ACCOUNTS];

/// The schema version of the payloads this build writes.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// One event as it travels on the bus: its metadata and the typed [`Event`].
///
/// On the wire (see [`Envelope::decode`] and the `Serialize` impl) it is one JSON object:
/// `id`, `type` (the event's type name, e.g. `MoneyDeposited`), `version`, `aggregate`,
/// `sequence`, `correlation_id`, `occurred_at` and `payload` (the event's fields); and, when the
/// event was caused by a customer call, `call_id` (the call's `x-request-id`) and `traceparent`
/// (the W3C trace context of the span that published it). Those two are optional on the wire:
/// events published before they existed decode without them, and an invalid pair is dropped
/// (the consumer starts a new trace) rather than the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Unique id; consumers record it in their inbox to apply each event once.
    pub id: Uuid,
    /// Schema version of the payload.
    pub version: u32,
    /// The aggregate the event belongs to: the account number.
    pub aggregate: String,
    /// Position of this event among its publisher's events for the same aggregate.
    pub sequence: i64,
    /// The request that caused the event.
    pub correlation_id: RequestId,
    /// When the event happened (RFC 3339, UTC).
    pub occurred_at: String,
    /// The customer call that caused it, when known: what its consumers continue.
    pub call: Option<EventCall>,
    /// The event itself: its type name and payload on the wire.
    pub event: Event,
}

/// An envelope as it is on the wire, its payload still undecoded JSON text.
#[derive(Deserialize)]
struct WireEnvelope<'a> {
    id: Uuid,
    #[serde(rename = "type", borrow)]
    event_type: std::borrow::Cow<'a, str>,
    version: u32,
    aggregate: String,
    sequence: i64,
    correlation_id: RequestId,
    occurred_at: String,
    #[serde(default, borrow)]
    call_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    traceparent: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    payload: &'a serde_json::value::RawValue,
}

impl WireEnvelope<'_> {
    /// The call the envelope names, when both its parts are valid.
    fn call(&self) -> Option<EventCall> {
        Some(EventCall {
            request_id: CallId::parse(self.call_id.as_deref()?)?,
            parent: TraceParent::parse(self.traceparent.as_deref()?)?,
        })
    }
}

impl Envelope {
    /// Decodes one envelope from its JSON text, its payload straight into the typed event.
    pub fn decode(body: &str) -> Result<Self, DecodeError> {
        let wire: WireEnvelope<'_> = serde_json::from_str(body).map_err(DecodeError::Envelope)?;
        Ok(Envelope {
            event: Event::decode(&wire.event_type, wire.payload.get())?,
            call: wire.call(),
            id: wire.id,
            version: wire.version,
            aggregate: wire.aggregate,
            sequence: wire.sequence,
            correlation_id: wire.correlation_id,
            occurred_at: wire.occurred_at,
        })
    }
}

impl Envelope {
    /// The context in which consumer group `group` applies this event: the publishing call's
    /// trace continued, with the group's span of this event as the current hop.
    pub fn consumed_by(&self, group: &str) -> CallContext {
        CallContext::consuming(self.call.as_ref(), SpanId::of_consumption(self.id, group))
    }
}

impl Serialize for Envelope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut wire = serializer.serialize_struct("Envelope", 10)?;
        wire.serialize_field("id", &self.id)?;
        wire.serialize_field("type", self.event.type_name())?;
        wire.serialize_field("version", &self.version)?;
        wire.serialize_field("aggregate", &self.aggregate)?;
        wire.serialize_field("sequence", &self.sequence)?;
        wire.serialize_field("correlation_id", &self.correlation_id)?;
        wire.serialize_field("occurred_at", &self.occurred_at)?;
        if let Some(call) = &self.call {
            wire.serialize_field("call_id", call.request_id.as_str())?;
            wire.serialize_field("traceparent", &call.parent.to_string())?;
        }
        wire.serialize_field("payload", &Payload(&self.event))?;
        wire.end()
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let body = <&serde_json::value::RawValue>::deserialize(deserializer)?;
        Envelope::decode(body.get()).map_err(serde::de::Error::custom)
    }
}

/// An event's fields, the envelope's `payload`.
struct Payload<'a>(&'a Event);

impl Serialize for Payload<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Event::AuthCertified(e) => e.serialize(serializer),
            Event::AuthCancelled(e) => e.serialize(serializer),
            Event::AccountOpened(e)
            | Event::MoneyDeposited(e)
            | Event::MoneyWithdrawn(e)
            | Event::AccountClosed(e) => e.serialize(serializer),
            Event::AccountRequestCancelled(e) => e.serialize(serializer),
            Event::TransferDebited(e) => e.serialize(serializer),
            Event::TransferCredited(e) => e.serialize(serializer),
            Event::TransferReversed(e) => e.serialize(serializer),
        }
    }
}

/// The kinds of request that move money or change an account (and so need step-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteKind {
    Open,
    Close,
    Deposit,
    Withdraw,
    /// From one account (`account_no`, the customer's) to another (`to_account_no`, anyone's).
    Transfer,
}

impl WriteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteKind::Open => "open",
            WriteKind::Close => "close",
            WriteKind::Deposit => "deposit",
            WriteKind::Withdraw => "withdraw",
            WriteKind::Transfer => "transfer",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "open" => Some(WriteKind::Open),
            "close" => Some(WriteKind::Close),
            "deposit" => Some(WriteKind::Deposit),
            "withdraw" => Some(WriteKind::Withdraw),
            "transfer" => Some(WriteKind::Transfer),
            _ => None,
        }
    }

    /// Whether this kind takes money out of its account (and so counts against the daily limit).
    pub fn is_outflow(self) -> bool {
        matches!(self, WriteKind::Withdraw | WriteKind::Transfer)
    }
}

/// What one item of an account's history is: a request's change to it, or a leg of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Open,
    Close,
    Deposit,
    Withdraw,
    /// The money of a transfer left this account.
    TransferOut,
    /// The money of a transfer from another account arrived.
    TransferIn,
    /// A transfer out could not be credited: its money came back.
    TransferReversed,
}

impl EntryKind {
    /// Every kind, for whoever must have a word for each.
    pub const ALL: [EntryKind; 7] = [
        EntryKind::Open,
        EntryKind::Close,
        EntryKind::Deposit,
        EntryKind::Withdraw,
        EntryKind::TransferOut,
        EntryKind::TransferIn,
        EntryKind::TransferReversed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Open => "open",
            EntryKind::Close => "close",
            EntryKind::Deposit => "deposit",
            EntryKind::Withdraw => "withdraw",
            EntryKind::TransferOut => "transfer_out",
            EntryKind::TransferIn => "transfer_in",
            EntryKind::TransferReversed => "transfer_reversed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        EntryKind::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }

    /// What an item of this kind moving `amount` adds to the account's balance.
    pub fn signed(self, amount: Won) -> i64 {
        match self {
            EntryKind::Open | EntryKind::Deposit | EntryKind::TransferIn => amount.won(),
            EntryKind::TransferReversed => amount.won(),
            EntryKind::Withdraw | EntryKind::TransferOut => -amount.won(),
            EntryKind::Close => 0,
        }
    }

    /// The item a request of `kind` makes on its own account (a transfer's first leg).
    pub fn of_write(kind: WriteKind) -> Self {
        match kind {
            WriteKind::Open => EntryKind::Open,
            WriteKind::Close => EntryKind::Close,
            WriteKind::Deposit => EntryKind::Deposit,
            WriteKind::Withdraw => EntryKind::Withdraw,
            WriteKind::Transfer => EntryKind::TransferOut,
        }
    }
}

/// An account's status, as stored and listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Open,
    Closed,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Open => "open",
            AccountStatus::Closed => "closed",
        }
    }

    /// The stored text of a status; anything else is not a status (never a silent default).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "open" => Some(AccountStatus::Open),
            "closed" => Some(AccountStatus::Closed),
            _ => None,
        }
    }
}

// The ids and amounts travel as the JSON strings and numbers they always were (`AccountNo` and
// `CustomerId` serialize as their text, `Won` as its number, and each refuses invalid values when
// decoded: such an event is a `DecodeError`, logged and skipped by consumers). `amount` is `Won`,
// not the strictly positive `Amount`: 0 is legal here (open without a deposit, close), and the
// account role, the authority on money, checks it against its own per-transaction limit (which a
// decoder cannot know) and answers one over it with AccountRequestCancelled(invalid_amount).

/// Step-up succeeded: the account role is to apply this request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthCertified {
    pub request_id: RequestId,
    pub customer_id: CustomerId,
    pub kind: WriteKind,
    pub account_no: AccountNo,
    /// Won to move; for `open` the opening amount (may be 0); for `close` 0.
    pub amount: Won,
    /// For `transfer`: the account credited (absent otherwise, and in events before 0.4.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_account_no: Option<AccountNo>,
}

/// Step-up refused: nothing happens; recorded for audit and for the read side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthCancelled {
    pub request_id: RequestId,
    pub customer_id: CustomerId,
    pub kind: WriteKind,
    pub account_no: AccountNo,
    pub amount: Won,
    pub reason: Reason,
}

/// An account changed: opened, deposited into, withdrawn from, or closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountChanged {
    pub request_id: RequestId,
    pub customer_id: CustomerId,
    pub account_no: AccountNo,
    /// Won moved by this change (opening amount for open, 0 for close).
    pub amount: Won,
    /// The balance after the change.
    pub balance: Balance,
    /// The account's version after the change (1 on open, +1 per change).
    pub version: i64,
}

/// The account role refused the request; the request is compensated (deleted) with this reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountRequestCancelled {
    pub request_id: RequestId,
    pub customer_id: CustomerId,
    pub kind: WriteKind,
    pub account_no: AccountNo,
    pub amount: Won,
    pub reason: Reason,
    /// The legacy system's message, e.g. "Not Sufficient".
    pub message: String,
    /// For `daily_limit_exceeded`: the won that may still leave the account today (absent
    /// otherwise, and in events written before 0.3.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_today: Option<Won>,
}

/// A transfer's first leg: its money left the source (`account_no`), whose balance and version
/// are as after it. Published on the source's key; the account role's own consumer of it makes
/// the second leg (credit or reversal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferDebited {
    pub request_id: RequestId,
    /// The source's owner, who asked for the transfer.
    pub customer_id: CustomerId,
    pub account_no: AccountNo,
    pub to_account_no: AccountNo,
    pub amount: Won,
    pub balance: Balance,
    pub version: i64,
}

/// A transfer's second leg: its money arrived on the target (`account_no`), whose balance and
/// version are as after it. Published on the target's key. It carries the source's balance and
/// version after the debit: the request's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferCredited {
    pub request_id: RequestId,
    /// The target's owner (the account this event changes).
    pub customer_id: CustomerId,
    pub account_no: AccountNo,
    pub from_account_no: AccountNo,
    pub amount: Won,
    pub balance: Balance,
    pub version: i64,
    pub source_balance: Balance,
    pub source_version: i64,
}

/// A transfer's compensation: the target could not be credited (`reason`), so its money came
/// back to the source (`account_no`), whose balance and version are as after it. The request
/// ends cancelled with `reason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferReversed {
    pub request_id: RequestId,
    pub customer_id: CustomerId,
    pub account_no: AccountNo,
    pub to_account_no: AccountNo,
    pub amount: Won,
    pub balance: Balance,
    pub version: i64,
    pub reason: Reason,
    pub message: String,
}

/// Every event type of the bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    AuthCertified(AuthCertified),
    AuthCancelled(AuthCancelled),
    AccountOpened(AccountChanged),
    MoneyDeposited(AccountChanged),
    MoneyWithdrawn(AccountChanged),
    AccountClosed(AccountChanged),
    AccountRequestCancelled(AccountRequestCancelled),
    TransferDebited(TransferDebited),
    TransferCredited(TransferCredited),
    TransferReversed(TransferReversed),
}

/// One item of an account's history, as any account event that changes an account states it:
/// the read model's and the ledger's one view of the seven changing events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'e> {
    pub kind: EntryKind,
    pub request_id: RequestId,
    /// The owner of `account_no`.
    pub customer_id: &'e CustomerId,
    pub account_no: &'e AccountNo,
    /// A transfer's other account.
    pub counterpart: Option<&'e AccountNo>,
    pub amount: Won,
    pub balance: Balance,
    pub version: i64,
}

/// An envelope that is not JSON of the envelope's shape, or whose type is unknown, or whose
/// payload does not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("bad envelope: {0}")]
    Envelope(serde_json::Error),
    #[error("unknown event type {0}")]
    UnknownType(String),
    #[error("bad payload for {event_type}: {source}")]
    Payload {
        event_type: String,
        source: serde_json::Error,
    },
}

impl Event {
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::AuthCertified(_) => "AuthCertified",
            Event::AuthCancelled(_) => "AuthCancelled",
            Event::AccountOpened(_) => "AccountOpened",
            Event::MoneyDeposited(_) => "MoneyDeposited",
            Event::MoneyWithdrawn(_) => "MoneyWithdrawn",
            Event::AccountClosed(_) => "AccountClosed",
            Event::AccountRequestCancelled(_) => "AccountRequestCancelled",
            Event::TransferDebited(_) => "TransferDebited",
            Event::TransferCredited(_) => "TransferCredited",
            Event::TransferReversed(_) => "TransferReversed",
        }
    }

    /// The event of an applied account change of `kind` (None for a transfer: its debit is a
    /// [`TransferDebited`], which names the target).
    pub fn account_changed(kind: WriteKind, change: AccountChanged) -> Option<Event> {
        Some(match kind {
            WriteKind::Open => Event::AccountOpened(change),
            WriteKind::Deposit => Event::MoneyDeposited(change),
            WriteKind::Withdraw => Event::MoneyWithdrawn(change),
            WriteKind::Close => Event::AccountClosed(change),
            WriteKind::Transfer => return None,
        })
    }

    /// The item this event adds to its account's history, if it changes the account.
    pub fn entry(&self) -> Option<Entry<'_>> {
        if let Some((kind, change)) = self.as_account_change() {
            return Some(Entry {
                kind: EntryKind::of_write(kind),
                request_id: change.request_id,
                customer_id: &change.customer_id,
                account_no: &change.account_no,
                counterpart: None,
                amount: change.amount,
                balance: change.balance,
                version: change.version,
            });
        }
        let (kind, e) = match self {
            Event::TransferDebited(e) => (EntryKind::TransferOut, Leg::of_debit(e)),
            Event::TransferCredited(e) => (EntryKind::TransferIn, Leg::of_credit(e)),
            Event::TransferReversed(e) => (EntryKind::TransferReversed, Leg::of_reversal(e)),
            _ => return None,
        };
        Some(Entry {
            kind,
            request_id: e.request_id,
            customer_id: e.customer_id,
            account_no: e.account_no,
            counterpart: Some(e.counterpart),
            amount: e.amount,
            balance: e.balance,
            version: e.version,
        })
    }

    /// The kind and the change, if this is an applied account change.
    pub fn as_account_change(&self) -> Option<(WriteKind, &AccountChanged)> {
        match self {
            Event::AccountOpened(change) => Some((WriteKind::Open, change)),
            Event::MoneyDeposited(change) => Some((WriteKind::Deposit, change)),
            Event::MoneyWithdrawn(change) => Some((WriteKind::Withdraw, change)),
            Event::AccountClosed(change) => Some((WriteKind::Close, change)),
            _ => None,
        }
    }

    /// The topic the event is published on.
    pub fn topic(&self) -> &'static str {
        match self {
            Event::AuthCertified(_) | Event::AuthCancelled(_) => TOPIC_REQUESTS,
            _ => TOPIC_ACCOUNTS,
        }
    }

    /// The account number the event is keyed by.
    pub fn account_no(&self) -> &str {
        match self {
            Event::AuthCertified(e) => e.account_no.as_str(),
            Event::AuthCancelled(e) => e.account_no.as_str(),
            Event::AccountOpened(e)
            | Event::MoneyDeposited(e)
            | Event::MoneyWithdrawn(e)
            | Event::AccountClosed(e) => e.account_no.as_str(),
            Event::AccountRequestCancelled(e) => e.account_no.as_str(),
            Event::TransferDebited(e) => e.account_no.as_str(),
            Event::TransferCredited(e) => e.account_no.as_str(),
            Event::TransferReversed(e) => e.account_no.as_str(),
        }
    }

    /// The request that caused the event.
    pub fn request_id(&self) -> RequestId {
        match self {
            Event::AuthCertified(e) => e.request_id,
            Event::AuthCancelled(e) => e.request_id,
            Event::AccountOpened(e)
            | Event::MoneyDeposited(e)
            | Event::MoneyWithdrawn(e)
            | Event::AccountClosed(e) => e.request_id,
            Event::AccountRequestCancelled(e) => e.request_id,
            Event::TransferDebited(e) => e.request_id,
            Event::TransferCredited(e) => e.request_id,
            Event::TransferReversed(e) => e.request_id,
        }
    }

    /// Wraps the event in a new envelope with a fresh id (and no call: see [`Envelope::call`]).
    pub fn into_envelope(self, sequence: i64) -> Envelope {
        Envelope {
            id: crate::ambient::uuid_v7(),
            version: EVENT_SCHEMA_VERSION,
            aggregate: self.account_no().to_owned(),
            sequence,
            correlation_id: self.request_id(),
            occurred_at: crate::time::now_rfc3339(),
            call: None,
            event: self,
        }
    }

    /// Decodes a payload's JSON text by its event type name.
    fn decode(event_type: &str, payload: &str) -> Result<Self, DecodeError> {
        fn typed<T: serde::de::DeserializeOwned>(
            event_type: &str,
            payload: &str,
        ) -> Result<T, DecodeError> {
            serde_json::from_str(payload).map_err(|source| DecodeError::Payload {
                event_type: event_type.to_owned(),
                source,
            })
        }
        Ok(match event_type {
            "AuthCertified" => Event::AuthCertified(typed(event_type, payload)?),
            "AuthCancelled" => Event::AuthCancelled(typed(event_type, payload)?),
            "AccountOpened" => Event::AccountOpened(typed(event_type, payload)?),
            "MoneyDeposited" => Event::MoneyDeposited(typed(event_type, payload)?),
            "MoneyWithdrawn" => Event::MoneyWithdrawn(typed(event_type, payload)?),
            "AccountClosed" => Event::AccountClosed(typed(event_type, payload)?),
            "AccountRequestCancelled" => {
                Event::AccountRequestCancelled(typed(event_type, payload)?)
            }
            "TransferDebited" => Event::TransferDebited(typed(event_type, payload)?),
            "TransferCredited" => Event::TransferCredited(typed(event_type, payload)?),
            "TransferReversed" => Event::TransferReversed(typed(event_type, payload)?),
            other => return Err(DecodeError::UnknownType(other.to_owned())),
        })
    }
}

/// The fields a transfer's three events share, borrowed.
struct Leg<'e> {
    request_id: RequestId,
    customer_id: &'e CustomerId,
    account_no: &'e AccountNo,
    counterpart: &'e AccountNo,
    amount: Won,
    balance: Balance,
    version: i64,
}

impl<'e> Leg<'e> {
    fn of_debit(e: &'e TransferDebited) -> Self {
        Leg {
            request_id: e.request_id,
            customer_id: &e.customer_id,
            account_no: &e.account_no,
            counterpart: &e.to_account_no,
            amount: e.amount,
            balance: e.balance,
            version: e.version,
        }
    }

    fn of_credit(e: &'e TransferCredited) -> Self {
        Leg {
            request_id: e.request_id,
            customer_id: &e.customer_id,
            account_no: &e.account_no,
            counterpart: &e.from_account_no,
            amount: e.amount,
            balance: e.balance,
            version: e.version,
        }
    }

    fn of_reversal(e: &'e TransferReversed) -> Self {
        Leg {
            request_id: e.request_id,
            customer_id: &e.customer_id,
            account_no: &e.account_no,
            counterpart: &e.to_account_no,
            amount: e.amount,
            balance: e.balance,
            version: e.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account_no(raw: &str) -> AccountNo {
        AccountNo::parse(raw).unwrap()
    }

    fn customer(raw: &str) -> CustomerId {
        CustomerId::parse(raw).unwrap()
    }

    fn won(raw: i64) -> Won {
        Won::from_stored(raw).unwrap()
    }

    fn balance(won: i64) -> Balance {
        Balance::from_stored(won).unwrap()
    }

    #[test]
    fn an_account_change_and_its_kind_make_the_event_and_back() {
        let change = AccountChanged {
            request_id: RequestId::generate(),
            customer_id: customer("c"),
            account_no: account_no("1"),
            amount: won(5),
            balance: balance(5),
            version: 1,
        };
        for kind in [
            WriteKind::Open,
            WriteKind::Deposit,
            WriteKind::Withdraw,
            WriteKind::Close,
        ] {
            let event = Event::account_changed(kind, change.clone()).unwrap();
            assert_eq!(event.as_account_change(), Some((kind, &change)));
        }
    }

    /// Each changing event is one item of its account's history: a transfer's three legs with
    /// their counterpart, the source's leaving and returning money under one request.
    #[test]
    fn every_changing_event_is_an_item_of_its_account() {
        let debited = TransferDebited {
            request_id: RequestId::generate(),
            customer_id: customer("a"),
            account_no: account_no("1001"),
            to_account_no: account_no("2002"),
            amount: won(70),
            balance: balance(30),
            version: 4,
        };
        let event = Event::TransferDebited(debited.clone());
        let entry = event.entry().unwrap();
        assert_eq!(
            (
                entry.kind,
                entry.account_no.as_str(),
                entry.counterpart.map(AccountNo::as_str)
            ),
            (EntryKind::TransferOut, "1001", Some("2002"))
        );
        assert_eq!(entry.kind.signed(entry.amount), -70);
        assert_eq!(EntryKind::TransferReversed.signed(won(70)), 70);
        assert_eq!(EntryKind::TransferIn.signed(won(70)), 70);
        for kind in EntryKind::ALL {
            assert_eq!(EntryKind::parse(kind.as_str()), Some(kind));
        }
        assert!(Event::AuthCertified(AuthCertified {
            request_id: debited.request_id,
            customer_id: customer("a"),
            kind: WriteKind::Transfer,
            account_no: account_no("1001"),
            amount: won(70),
            to_account_no: Some(account_no("2002")),
        })
        .entry()
        .is_none());
        assert_eq!(Event::TransferDebited(debited).topic(), TOPIC_ACCOUNTS);
    }

    #[test]
    fn events_round_trip_through_the_envelope() {
        let event = Event::MoneyDeposited(AccountChanged {
            request_id: RequestId::generate(),
            customer_id: customer("1@sk.com"),
            account_no: account_no("1001"),
            amount: won(500),
            balance: balance(1500),
            version: 3,
        });
        let envelope = event.clone().into_envelope(7);
        assert_eq!(envelope.aggregate, "1001");
        assert_eq!(envelope.sequence, 7);
        let wire = serde_json::to_string(&envelope).unwrap();
        assert!(wire.contains("\"type\":\"MoneyDeposited\""));
        assert!(wire.contains("\"correlation_id\""));
        let back = Envelope::decode(&wire).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(serde_json::from_str::<Envelope>(&wire).unwrap(), envelope);
    }

    #[test]
    fn the_call_travels_in_the_envelope_and_a_broken_one_is_dropped_not_the_event() {
        let event = Event::AccountClosed(AccountChanged {
            request_id: RequestId::generate(),
            customer_id: customer("c"),
            account_no: account_no("1001"),
            amount: won(0),
            balance: balance(0),
            version: 4,
        });
        let publisher = CallContext::from_headers(&http::HeaderMap::new());
        let envelope = Envelope {
            call: Some(publisher.publishing()),
            ..event.clone().into_envelope(1)
        };
        let wire = wire_value(&envelope);
        assert_eq!(wire["call_id"], publisher.request_id.as_str());
        assert_eq!(wire["traceparent"], publisher.traceparent());
        let back = Envelope::decode(&wire.to_string()).unwrap();
        assert_eq!(back, envelope);
        let consumer = back.consumed_by("history");
        assert_eq!(consumer.trace_id, publisher.trace_id);
        assert_eq!(consumer.parent_id, Some(publisher.span_id));
        assert_eq!(consumer.request_id, publisher.request_id);
        // Every delivery to a group is one span; each group has its own.
        assert_eq!(back.consumed_by("history"), consumer);
        assert_ne!(back.consumed_by("mypage").span_id, consumer.span_id);

        let untraced = event.into_envelope(2);
        assert!(!wire_value(&untraced)
            .as_object()
            .unwrap()
            .contains_key("traceparent"));
        for (field, broken) in [("traceparent", "00-zz-1-01"), ("call_id", "has space")] {
            let mut wire = wire.clone();
            wire[field] = broken.into();
            let decoded = Envelope::decode(&wire.to_string()).unwrap();
            assert_eq!(
                (decoded.call, decoded.event),
                (None, envelope.event.clone())
            );
        }
    }

    /// The envelope's JSON as a value, for tests that break one of its fields.
    fn wire_value(envelope: &Envelope) -> serde_json::Value {
        serde_json::to_value(envelope).unwrap()
    }

    #[test]
    fn unknown_types_are_reported() {
        let envelope = Event::AuthCertified(AuthCertified {
            request_id: RequestId::generate(),
            customer_id: customer("c"),
            kind: WriteKind::Deposit,
            account_no: account_no("1"),
            amount: won(1),
            to_account_no: None,
        })
        .into_envelope(1);
        let mut wire = wire_value(&envelope);
        wire["type"] = serde_json::json!("Nope");
        assert!(matches!(
            Envelope::decode(&wire.to_string()),
            Err(DecodeError::UnknownType(_))
        ));
        assert!(matches!(
            Envelope::decode("{\"id\":1}"),
            Err(DecodeError::Envelope(_))
        ));
    }

    fn request_id() -> RequestId {
        Uuid::parse_str("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
            .unwrap()
            .into()
    }

    /// The payload JSON of every event, byte for byte as it was when the fields were plain
    /// strings and numbers (the expected texts list the fields in declaration order, as the
    /// old `String`/`i64` structs wrote them): the typed fields change nothing on the wire.
    #[test]
    fn payload_json_is_unchanged_for_every_event() {
        let id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let change = AccountChanged {
            request_id: request_id(),
            customer_id: customer("1@sk.com"),
            account_no: account_no("110-000000042"),
            amount: won(500),
            balance: balance(1500),
            version: 3,
        };
        let changed = format!(
            r#"{{"requestId":"{id}","customerId":"1@sk.com","accountNo":"110-000000042","amount":500,"balance":1500,"version":3}}"#
        );
        assert_eq!(serde_json::to_string(&change).unwrap(), changed);
        let cases = [
            (
                Event::AuthCertified(AuthCertified {
                    request_id: request_id(),
                    customer_id: customer("1@sk.com"),
                    kind: WriteKind::Open,
                    account_no: account_no("110-000000042"),
                    amount: won(0),
                    to_account_no: None,
                }),
                format!(
                    r#"{{"requestId":"{id}","customerId":"1@sk.com","kind":"open","accountNo":"110-000000042","amount":0}}"#
                ),
            ),
            (
                Event::AuthCancelled(AuthCancelled {
                    request_id: request_id(),
                    customer_id: customer("1@sk.com"),
                    kind: WriteKind::Withdraw,
                    account_no: account_no("1001"),
                    amount: won(70),
                    reason: Reason::StepUpFailed,
                }),
                format!(
                    r#"{{"requestId":"{id}","customerId":"1@sk.com","kind":"withdraw","accountNo":"1001","amount":70,"reason":"step_up_failed"}}"#
                ),
            ),
            (Event::AccountOpened(change.clone()), changed.clone()),
            (Event::MoneyDeposited(change.clone()), changed.clone()),
            (Event::MoneyWithdrawn(change.clone()), changed.clone()),
            (Event::AccountClosed(change.clone()), changed.clone()),
            (
                Event::AccountRequestCancelled(AccountRequestCancelled {
                    request_id: request_id(),
                    customer_id: customer("1@sk.com"),
                    kind: WriteKind::Withdraw,
                    account_no: account_no("1001"),
                    amount: won(70),
                    reason: Reason::InsufficientFunds,
                    message: "Not Sufficient".into(),
                    allowed_today: None,
                }),
                format!(
                    r#"{{"requestId":"{id}","customerId":"1@sk.com","kind":"withdraw","accountNo":"1001","amount":70,"reason":"insufficient_funds","message":"Not Sufficient"}}"#
                ),
            ),
            (
                Event::AccountRequestCancelled(AccountRequestCancelled {
                    request_id: request_id(),
                    customer_id: customer("1@sk.com"),
                    kind: WriteKind::Withdraw,
                    account_no: account_no("1001"),
                    amount: won(70),
                    reason: Reason::DailyLimitExceeded,
                    message: "Daily Limit Exceeded".into(),
                    allowed_today: Some(won(30)),
                }),
                format!(
                    r#"{{"requestId":"{id}","customerId":"1@sk.com","kind":"withdraw","accountNo":"1001","amount":70,"reason":"daily_limit_exceeded","message":"Daily Limit Exceeded","allowedToday":30}}"#
                ),
            ),
            (
                Event::AuthCertified(AuthCertified {
                    request_id: request_id(),
                    customer_id: customer("1@sk.com"),
                    kind: WriteKind::Transfer,
                    account_no: account_no("1001"),
                    amount: won(70),
                    to_account_no: Some(account_no("2002")),
                }),
                format!(
                    r#"{{"requestId":"{id}","customerId":"1@sk.com","kind":"transfer","accountNo":"1001","amount":70,"toAccountNo":"2002"}}"#
                ),
            ),
            (
                Event::TransferDebited(TransferDebited {
                    request_id: request_id(),
                    customer_id: customer("1@sk.com"),
                    account_no: account_no("1001"),
                    to_account_no: account_no("2002"),
                    amount: won(70),
                    balance: balance(30),
                    version: 4,
                }),
                format!(
                    r#"{{"requestId":"{id}","customerId":"1@sk.com","accountNo":"1001","toAccountNo":"2002","amount":70,"balance":30,"version":4}}"#
                ),
            ),
            (
                Event::TransferCredited(TransferCredited {
                    request_id: request_id(),
                    customer_id: customer("bob"),
                    account_no: account_no("2002"),
                    from_account_no: account_no("1001"),
                    amount: won(70),
                    balance: balance(75),
                    version: 2,
                    source_balance: balance(30),
                    source_version: 4,
                }),
                format!(
                    r#"{{"requestId":"{id}","customerId":"bob","accountNo":"2002","fromAccountNo":"1001","amount":70,"balance":75,"version":2,"sourceBalance":30,"sourceVersion":4}}"#
                ),
            ),
            (
                Event::TransferReversed(TransferReversed {
                    request_id: request_id(),
                    customer_id: customer("1@sk.com"),
                    account_no: account_no("1001"),
                    to_account_no: account_no("2002"),
                    amount: won(70),
                    balance: balance(100),
                    version: 5,
                    reason: Reason::AccountClosed,
                    message: "Account Closed".into(),
                }),
                format!(
                    r#"{{"requestId":"{id}","customerId":"1@sk.com","accountNo":"1001","toAccountNo":"2002","amount":70,"balance":100,"version":5,"reason":"account_closed","message":"Account Closed"}}"#
                ),
            ),
        ];
        for (event, wire) in cases {
            let envelope = event.clone().into_envelope(1);
            // The payload's bytes as the typed struct writes them, field for field.
            let payload = serde_json::to_string(&Payload(&envelope.event)).unwrap();
            assert_eq!(payload, wire, "{}", event.type_name());
            assert_eq!(wire_value(&envelope)["type"], event.type_name());
            assert_eq!(envelope.aggregate, event.account_no());
            let back = Envelope::decode(&serde_json::to_string(&envelope).unwrap()).unwrap();
            assert_eq!(back.event, event);
        }
    }

    /// An event whose account number, customer id or balance is not valid does not decode: a
    /// payload error, which consumers log and skip (see `onlinebank_bus::Delivery::decode`).
    #[test]
    fn invalid_ids_or_balances_are_decode_errors() {
        let envelope = Event::MoneyDeposited(AccountChanged {
            request_id: request_id(),
            customer_id: customer("c"),
            account_no: account_no("1001"),
            amount: won(5),
            balance: balance(5),
            version: 1,
        })
        .into_envelope(1);
        for (field, bad) in [
            ("accountNo", serde_json::json!("1'; drop table")),
            ("accountNo", serde_json::json!("")),
            ("customerId", serde_json::json!("a b")),
            ("customerId", serde_json::json!("")),
            ("balance", serde_json::json!(-1)),
            ("amount", serde_json::json!(-1)),
        ] {
            let mut broken = wire_value(&envelope);
            broken["payload"][field] = bad;
            assert!(
                matches!(
                    Envelope::decode(&broken.to_string()),
                    Err(DecodeError::Payload { .. })
                ),
                "{field}"
            );
        }
    }
}
