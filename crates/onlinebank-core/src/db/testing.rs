//! Support for the workspace's tests that run against a real PostgreSQL (compiled only for tests:
//! the `testing` feature, which the crates' dev-dependencies turn on).

use super::Db;
use sqlx::Connection;

/// Creates a fresh, uniquely named database on the server named by the environment variable
/// `ONLINEBANK_TEST_POSTGRES` (which `.ci/run` sets) and returns its URL. Fails with
/// instructions when the variable is missing.
pub async fn fresh_postgres(prefix: &str) -> anyhow::Result<String> {
    let server = std::env::var("ONLINEBANK_TEST_POSTGRES").map_err(|_| {
        anyhow::anyhow!(
            "this test needs a real PostgreSQL: run ./.ci/run, or dev/postgres.sh start and \
             export ONLINEBANK_TEST_POSTGRES=$(dev/postgres.sh url)"
        )
    })?;
    let name = format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    // Concurrent CREATE DATABASEs can collide on the template ("being accessed by other
    // users"): try a few times.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut conn = sqlx::PgConnection::connect(&server).await?;
        let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
        match created {
            Ok(_) => break,
            Err(error) if attempt < 10 => {
                tracing::debug!(%error, "creating a test database, retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

/// A fresh PostgreSQL database (see [`fresh_postgres`]) opened as `schema`; panics with the
/// reason when there is none (a test cannot go on without it).
pub async fn postgres_db(prefix: &str, schema: &str) -> Db {
    let url = fresh_postgres(prefix)
        .await
        .unwrap_or_else(|error| panic!("{error:#}"));
    Db::open(&url, schema)
        .await
        .unwrap_or_else(|error| panic!("opening {url}: {error:#}"))
}
