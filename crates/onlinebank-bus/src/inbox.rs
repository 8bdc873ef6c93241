//! The consumer's inbox: processed event ids, recorded in the same transaction as the effect.

use onlinebank_core::args;
use onlinebank_core::db::{Conn, Error};

/// Creates the inbox table if missing (the index serves retention, see [`purge`]).
/// Rows deleted per transaction by [`purge`].
const PURGE_BATCH: i64 = 5_000;

/// Forgets events processed before `before` (epoch ms): past the retention window no bus
/// delivers them again (the embedded log has deleted them; a Kafka topic's retention must not
/// be longer than the window). Returns how many rows were deleted.
pub async fn purge(db: &onlinebank_core::db::Db, before: i64) -> Result<u64, Error> {
    db.delete_in_batches(
        "DELETE FROM inbox WHERE event_id IN (
            SELECT event_id FROM inbox WHERE processed_at < $1 LIMIT $2)",
        before,
        PURGE_BATCH,
    )
    .await
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use onlinebank_core::db::Db;

    async fn remembered(db: &Db) -> i64 {
        db.read()
            .await
            .unwrap()
            .scalar("SELECT COUNT(*) FROM inbox", &[])
            .await
            .unwrap()
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn purge_forgets_only_events_processed_before_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("r.db").display().to_string(), "r")
            .await
            .unwrap();
        crate::schema::bus_only(&db).await.unwrap();
        for (id, at) in [("old-1", 1_000i64), ("old-2", 1_999), ("new", 2_000)] {
            db.write(move |conn| {
                Box::pin(async move {
                    conn.execute(
                        "INSERT INTO inbox (event_id, processed_at) VALUES ($1, $2)",
                        args![id, at],
                    )
                    .await
                })
            })
            .await
            .unwrap();
        }
        assert_eq!(purge(&db, 2_000).await.unwrap(), 2);
        assert_eq!(remembered(&db).await, 1);
        // The remembered one is still refused a second time.
        let again = db
            .write(|conn| Box::pin(async move { first_delivery(conn, "new").await }))
            .await
            .unwrap();
        assert!(!again);
    }
}
