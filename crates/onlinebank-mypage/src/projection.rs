//! Folding account events into the read model.

use onlinebank_bus::projection::Projection;
use onlinebank_core::args;
use onlinebank_core::db::{BoxFuture, Conn, Error};
use onlinebank_core::event::{AccountChanged, Envelope, Event, WriteKind};

/// The read model's projection of account events.
#[derive(Clone)]
pub struct ReadModel;

impl Projection for ReadModel {
    fn apply<'c>(
        &'c self,
        conn: &'c mut Conn,
        envelope: &'c Envelope,
        event: Event,
    ) -> BoxFuture<'c, anyhow::Result<()>> {
        Box::pin(apply(conn, envelope, event))
    }
}

async fn apply(tx: &mut Conn, envelope: &Envelope, event: Event) -> anyhow::Result<()> {
    let at = envelope.occurred_at.as_str();
    if let Some((kind, change)) = event.as_account_change() {
        apply_change(tx, kind, change, at).await?;
    } else if let Event::AccountRequestCancelled(cancelled) = event {
        // Shown in the legacy view as the account's last request; never touches money.
        let request_id = cancelled.request_id.to_string();
        tx.execute(
            "UPDATE accounts_view SET last_request_id = $1, last_request_kind = $2,
                last_request_amount = $3, last_request_status = 'RequestCancelled',
                last_request_at = $4
             WHERE account_no = $5 AND customer_id = $6",
            args![
                &request_id,
                cancelled.kind.as_str(),
                cancelled.amount,
                at,
                &cancelled.account_no,
                &cancelled.customer_id
            ],
        )
        .await?;
    }
    Ok(())
}

async fn apply_change(
    conn: &mut Conn,
    kind: WriteKind,
    change: &AccountChanged,
    at: &str,
) -> Result<(), Error> {
    let status = if kind == WriteKind::Close {
        "closed"
    } else {
        "open"
    };
    let kind = kind.as_str();
    let request_id = change.request_id.to_string();
    conn.execute(
        "INSERT INTO accounts_view (account_no, customer_id, balance, status, version, opened_at,
             updated_at, last_request_id, last_request_kind, last_request_amount,
             last_request_status, last_request_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, 'RequestCompleted', $6)
         ON CONFLICT (account_no) DO UPDATE SET
             balance = excluded.balance, status = excluded.status, version = excluded.version,
             updated_at = excluded.updated_at, last_request_id = excluded.last_request_id,
             last_request_kind = excluded.last_request_kind,
             last_request_amount = excluded.last_request_amount,
             last_request_status = excluded.last_request_status,
             last_request_at = excluded.last_request_at
         WHERE excluded.version > accounts_view.version",
        args![
            &change.account_no,
            &change.customer_id,
            change.balance.won(),
            status,
            change.version,
            at,
            &request_id,
            kind,
            change.amount
        ],
    )
    .await?;
    conn.execute(
        "INSERT INTO transactions_view (account_no, version, request_id, kind, amount, balance_after, occurred_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        args![
            &change.account_no,
            change.version,
            &request_id,
            kind,
            change.amount,
            change.balance.won(),
            at
        ],
    )
    .await?;
    Ok(())
}
