//! Folding account events into the read model.

use onlinebank_bus::Delivery;
use onlinebank_core::event::{AccountChanged, Event};

pub async fn apply_batch(pool: &onlinebank_core::db::Db, batch: &[Delivery]) -> anyhow::Result<()> {
    let mut tx = pool.begin_write().await?;
    for delivery in batch {
        let Some((envelope, event)) = delivery.decode() else {
            continue;
        };
        if !onlinebank_bus::inbox::first_delivery(&mut tx, &envelope.id.to_string()).await? {
            continue;
        }
        let at = envelope.occurred_at.as_str();
        match event {
            Event::AccountOpened(change) => apply_change(&mut tx, "open", &change, at).await?,
            Event::MoneyDeposited(change) => apply_change(&mut tx, "deposit", &change, at).await?,
            Event::MoneyWithdrawn(change) => apply_change(&mut tx, "withdraw", &change, at).await?,
            Event::AccountClosed(change) => apply_change(&mut tx, "close", &change, at).await?,
            Event::AccountRequestCancelled(cancelled) => {
                // Shown in the legacy view as the account's last request; never touches money.
                sqlx::query(
                    "UPDATE accounts_view SET last_request_id = $1, last_request_kind = $2,
                        last_request_amount = $3, last_request_status = 'RequestCancelled',
                        last_request_at = $4
                     WHERE account_no = $5 AND customer_id = $6",
                )
                .bind(cancelled.request_id.to_string())
                .bind(cancelled.kind.as_str())
                .bind(cancelled.amount)
                .bind(at)
                .bind(&cancelled.account_no)
                .bind(&cancelled.customer_id)
                .execute(&mut *tx)
                .await?;
            }
            _ => {}
        }
    }
    tx.commit().await?;
    Ok(())
}

async fn apply_change(
    conn: &mut sqlx::AnyConnection,
    kind: &str,
    change: &AccountChanged,
    at: &str,
) -> Result<(), sqlx::Error> {
    let status = if kind == "close" { "closed" } else { "open" };
    sqlx::query(
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
    )
    .bind(&change.account_no)
    .bind(&change.customer_id)
    .bind(change.balance)
    .bind(status)
    .bind(change.version)
    .bind(at)
    .bind(change.request_id.to_string())
    .bind(kind)
    .bind(change.amount)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO transactions_view (account_no, version, request_id, kind, amount, balance_after, occurred_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(&change.account_no)
    .bind(change.version)
    .bind(change.request_id.to_string())
    .bind(kind)
    .bind(change.amount)
    .bind(change.balance)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
