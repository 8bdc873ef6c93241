//! The consumer's inbox: processed event ids, recorded in the same transaction as the effect.

use onlinebank_core::args;
use onlinebank_core::batch_row;
use onlinebank_core::db::batch::BatchRow;
use onlinebank_core::db::{json_rows, Conn, Error};
use std::collections::HashSet;
use uuid::Uuid;

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

batch_row! {
    /// An event recorded as processed by [`first_deliveries`].
    struct Processed {
        event_id: Uuid => Text,
    }
}

/// Records every id of a batch as processed, in ONE statement (on PostgreSQL one round trip for
/// the batch instead of one per event); returns the ids seen for the first time. The others were
/// applied before: skip them.
pub async fn first_deliveries(
    conn: &mut Conn,
    event_ids: &[Uuid],
) -> Result<HashSet<String>, Error> {
    if event_ids.is_empty() {
        return Ok(HashSet::new());
    }
    let processed: Vec<Processed> = event_ids
        .iter()
        .map(|&event_id| Processed { event_id })
        .collect();
    let sql = format!(
        "INSERT INTO inbox ({}, processed_at) SELECT {}, $1 FROM {} WHERE true
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        Processed::columns(),
        Processed::select(),
        conn.engine().json_rows("$2")
    );
    let rows: Vec<(String,)> = conn
        .fetch_all(
            &sql,
            args![
                onlinebank_core::time::now_ms(),
                json_rows(&processed)?.as_str()
            ],
        )
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
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

    /// A SQLite database with only the bus's tables (the directory goes with the test).
    async fn sqlite_bus_db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("inbox.db").display().to_string(), "inbox")
            .await
            .unwrap();
        crate::schema::bus_only(&db).await.unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn purge_forgets_only_events_processed_before_the_cutoff() {
        let (_dir, db) = sqlite_bus_db().await;
        let new = Uuid::new_v4();
        let old = [Uuid::new_v4(), Uuid::new_v4()];
        for (id, at) in [(old[0], 1_000i64), (old[1], 1_999), (new, 2_000)] {
            db.write(move |conn| {
                Box::pin(async move {
                    conn.execute(
                        "INSERT INTO inbox (event_id, processed_at) VALUES ($1, $2)",
                        args![id.to_string().as_str(), at],
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
            .write(move |conn| Box::pin(async move { first_deliveries(conn, &[new]).await }))
            .await
            .unwrap();
        assert!(again.is_empty());
    }

    async fn first_deliveries_behaviour(db: Db) {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let first = |batch: Vec<Uuid>| {
            db.write(move |conn| Box::pin(async move { first_deliveries(conn, &batch).await }))
        };
        let seen = first(vec![ids[0], ids[1]]).await.unwrap();
        assert_eq!(
            seen,
            HashSet::from([ids[0].to_string(), ids[1].to_string()])
        );
        // A batch with an old id, a new one, and the new one twice: only the new one, once.
        let seen = first(vec![ids[1], ids[2], ids[2]]).await.unwrap();
        assert_eq!(seen, HashSet::from([ids[2].to_string()]));
        assert!(first(vec![]).await.unwrap().is_empty());
        assert_eq!(remembered(&db).await, 3);
        let mut stored: Vec<(String,)> = db
            .read()
            .await
            .unwrap()
            .fetch_all("SELECT event_id FROM inbox", &[])
            .await
            .unwrap();
        stored.sort();
        let mut sent: Vec<(String,)> = ids.iter().map(|id| (id.to_string(),)).collect();
        sent.sort();
        assert_eq!(stored, sent);
    }

    #[tokio::test]
    async fn first_deliveries_are_told_apart_from_redeliveries_on_sqlite() {
        let (_dir, db) = sqlite_bus_db().await;
        first_deliveries_behaviour(db).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (ONLINEBANK_TEST_POSTGRES): ./.ci/run runs it"]
    async fn first_deliveries_are_told_apart_from_redeliveries_on_postgres() {
        let db = onlinebank_core::db::testing::postgres_db("inbox", "inbox").await;
        crate::schema::bus_only(&db).await.unwrap();
        first_deliveries_behaviour(db).await;
    }
}
