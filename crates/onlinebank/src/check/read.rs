//! What the stores hold, read with plain SQL from connections opened read-only (`open.rs`):
//! the tables of each role's migrations and of the embedded log (`onlinebank-bus`).

use super::rules::{AccountState, Group, OpenRequest, Sum, Unapplied};
use onlinebank_bus::embedded::OUTBOX_POSITIONS;
use onlinebank_core::event::Envelope;
use rusqlite::{Connection, OptionalExtension};
use std::collections::BTreeMap;

/// `PRAGMA integrity_check`'s lines: just `ok` when the database is sound.
pub fn integrity(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare("PRAGMA integrity_check")?;
    let lines = statement.query_map([], |row| row.get::<_, String>(0))?;
    lines.collect()
}

/// Every account of `table` (`accounts` in account.db, `accounts_view` in mypage.db).
pub fn accounts(
    conn: &Connection,
    table: &'static str,
) -> rusqlite::Result<BTreeMap<String, AccountState>> {
    let sql = format!("SELECT account_no, balance, status, version FROM {table}");
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            AccountState {
                balance: row.get(1)?,
                status: row.get(2)?,
                version: row.get(3)?,
            },
        ))
    })?;
    rows.collect()
}

/// Per account, what the entries of `table` (`ledger` in history.db, `transactions_view` in
/// mypage.db) add up to, by the kit's rule for each kind.
pub fn sums(conn: &Connection, table: &'static str) -> rusqlite::Result<BTreeMap<String, Sum>> {
    let sql =
        format!("SELECT account_no, kind, SUM(amount) FROM {table} GROUP BY account_no, kind");
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })?;
    let mut sums: BTreeMap<String, Sum> = BTreeMap::new();
    for row in rows {
        let (no, kind, amount) = row?;
        let moved = super::rules::signed(&kind, amount);
        let sum = sums.entry(no).or_insert(Ok(0));
        *sum = match (sum.clone(), moved) {
            (Ok(sum), Ok(moved)) => Ok(sum + moved),
            (Err(error), _) | (_, Err(error)) => Err(error),
        };
    }
    Ok(sums)
}

/// request.db's requests that are not finished (PENDING or AUTHORIZED).
pub fn open_requests(conn: &Connection) -> rusqlite::Result<Vec<OpenRequest>> {
    let mut statement = conn.prepare(
        "SELECT id, kind, account_no, amount, status, created_at FROM requests
         WHERE status IN ('PENDING', 'AUTHORIZED') ORDER BY created_at",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(OpenRequest {
            id: row.get(0)?,
            kind: row.get(1)?,
            account_no: row.get(2)?,
            amount: row.get(3)?,
            status: row.get(4)?,
            created_at: row.get(5)?,
        })
    })?;
    rows.collect()
}

/// The newest moment request.db recorded anything (epoch ms): a request made, completed or
/// compensated, an outcome consumed.
pub fn last_activity(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(created_at) FROM requests), 0),
                    COALESCE((SELECT MAX(completed_at) FROM requests), 0),
                    COALESCE((SELECT MAX(cancelled_at) FROM cancelled_requests), 0),
                    COALESCE((SELECT MAX(processed_at) FROM inbox), 0))",
        [],
        |row| row.get::<_, i64>(0),
    )
    .map(|last| (last > 0).then_some(last))
}

/// Every consumer group of bus.db: those with a committed position and those only subscribed.
pub fn groups(bus: &Connection) -> rusqlite::Result<Vec<Group>> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut statement = bus.prepare("SELECT group_name, position FROM consumer_positions")?;
    for row in statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get(1)?)))? {
        let (name, position) = row?;
        groups.insert(
            name.clone(),
            Group {
                name,
                position: Some(position),
                topics: Vec::new(),
            },
        );
    }
    let mut statement =
        bus.prepare("SELECT group_name, topic FROM subscriptions ORDER BY topic")?;
    for row in statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get(1)?)))? {
        let (name, topic) = row?;
        let group = groups.entry(name.clone()).or_insert_with(|| Group {
            name,
            position: None,
            topics: Vec::new(),
        });
        group.topics.push(topic);
    }
    Ok(groups.into_values().collect())
}

/// The highest row number `table` ever gave (AUTOINCREMENT keeps it in `sqlite_sequence`
/// after the rows are deleted), 0 before its first row.
pub fn table_end(
    conn: &Connection,
    table: &'static str,
    column: &'static str,
) -> rusqlite::Result<i64> {
    let sql = format!(
        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0),
                    COALESCE((SELECT MAX({column}) FROM {table}), 0))"
    );
    conn.query_row(&sql, [], |row| row.get(0))
}

/// bus.db's `outbox_sources`: per topic, the file whose outbox is its log (the file's name; it
/// is looked for in the checked directory, wherever it was when it was recorded).
pub fn outbox_sources(bus: &Connection) -> rusqlite::Result<BTreeMap<String, String>> {
    let mut statement = bus.prepare("SELECT topic, path FROM outbox_sources")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut sources = BTreeMap::new();
    for row in rows {
        let (topic, path) = row?;
        let name = std::path::Path::new(&path)
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or(path);
        sources.insert(topic, name);
    }
    Ok(sources)
}

/// Where a group reads one topic: its committed position, bus.db, the topic's served outbox
/// (if any) and the group's own database, whose inbox holds what it applied.
pub struct Reader<'a> {
    pub position: i64,
    pub topic: &'a str,
    pub bus: &'a Connection,
    pub outbox: Option<&'a Connection>,
    pub inbox: &'a Connection,
}

/// The account changes of `reader.topic` after the group's position that it has not applied
/// (not in its inbox): what it applies when the bank starts again.
pub fn unapplied(reader: &Reader) -> rusqlite::Result<Vec<Unapplied>> {
    let mut bodies = Vec::new();
    if reader.position < OUTBOX_POSITIONS {
        bodies.extend(bodies_after(
            reader.bus,
            "events",
            "position",
            reader.position,
            reader.topic,
        )?);
    }
    if let Some(outbox) = reader.outbox {
        let after = (reader.position - OUTBOX_POSITIONS).max(0);
        bodies.extend(bodies_after(outbox, "outbox", "seq", after, reader.topic)?);
    }
    let mut applied = reader
        .inbox
        .prepare("SELECT 1 FROM inbox WHERE event_id = ?1")?;
    let mut changes = Vec::new();
    for body in bodies {
        // What a consumer cannot decode it skips (and logs): it changes no store.
        let Ok(envelope) = Envelope::decode(&body) else {
            continue;
        };
        let Some(entry) = envelope.event.entry() else {
            continue;
        };
        let id = envelope.id.to_string();
        if applied.query_row([&id], |_| Ok(())).optional()?.is_some() {
            continue;
        }
        let closed = entry.kind == onlinebank_core::event::EntryKind::Close;
        changes.push(Unapplied {
            account_no: entry.account_no.as_str().to_owned(),
            kind: entry.kind.as_str().to_owned(),
            amount: entry.amount.won(),
            after: AccountState {
                balance: entry.balance.won(),
                status: if closed { "closed" } else { "open" }.to_owned(),
                version: entry.version,
            },
        });
    }
    Ok(changes)
}

/// The bodies of `topic`'s rows of `table` after `after` in `column`, in log order.
fn bodies_after(
    conn: &Connection,
    table: &'static str,
    column: &'static str,
    after: i64,
    topic: &str,
) -> rusqlite::Result<Vec<String>> {
    let sql =
        format!("SELECT body FROM {table} WHERE {column} > ?1 AND topic = ?2 ORDER BY {column}");
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map(rusqlite::params![after, topic], |row| row.get(0))?;
    rows.collect()
}
