//! The consumer's inbox: processed event ids, recorded in the same transaction as the effect.

use onlinebank_core::args;
use onlinebank_core::db::{Conn, Error};

/// Creates the inbox table if missing.
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS inbox (
    event_id TEXT PRIMARY KEY,
    processed_at BIGINT NOT NULL
)";

/// Records `event_id` as processed; returns false if it already was (skip the event).
pub async fn first_delivery(conn: &mut Conn, event_id: &str) -> Result<bool, Error> {
    let inserted = conn
        .execute(
            "INSERT INTO inbox (event_id, processed_at) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING",
            args![event_id, onlinebank_core::time::now_ms()],
        )
        .await?;
    Ok(inserted == 1)
}
