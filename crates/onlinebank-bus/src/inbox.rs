//! The consumer's inbox: processed event ids, recorded in the same transaction as the effect.

use sqlx::AnyConnection;

/// Creates the inbox table if missing.
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS inbox (
    event_id TEXT PRIMARY KEY,
    processed_at BIGINT NOT NULL
)";

/// Records `event_id` as processed; returns false if it already was (skip the event).
pub async fn first_delivery(conn: &mut AnyConnection, event_id: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO inbox (event_id, processed_at) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(onlinebank_core::time::now_ms())
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}
