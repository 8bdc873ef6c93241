//! PostgreSQL: TLS settings in URLs, pools working in a role's schema, and LISTEN. The pools use
//! sqlx's native PostgreSQL driver (`PgPool`): the `Any` driver's per-value conversions cost
//! CPU on every row and argument, and its `sqlite` half tied sqlx to an old bundled SQLite.

use super::Engine;
use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Executor};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// `url` with `sslrootcert=ca` (and `sslmode=verify-full` unless it names a mode) when it is a
/// PostgreSQL URL without a `sslrootcert` of its own; other URLs are returned as they are.
pub fn with_ca_file(url: &str, ca: &std::path::Path) -> String {
    if Engine::of_url(url) != Engine::Postgres {
        return url.to_owned();
    }
    let query = url.split_once('?').map(|(_, query)| query).unwrap_or("");
    let has = |key: &str| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(key))
    };
    if has("sslrootcert") {
        return url.to_owned();
    }
    let mut url = url.to_owned();
    url.push(if url.contains('?') { '&' } else { '?' });
    if !has("sslmode") {
        url.push_str("sslmode=verify-full&");
    }
    url.push_str("sslrootcert=");
    url.extend(percent_encoding::utf8_percent_encode(
        &ca.display().to_string(),
        percent_encoding::NON_ALPHANUMERIC,
    ));
    url
}

/// Opens a pool on PostgreSQL whose connections work in `schema` (created if missing).
pub async fn open_postgres(url: &str, schema: &str, connections: u32) -> anyhow::Result<PgPool> {
    anyhow::ensure!(
        !schema.is_empty() && schema.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
        "bad schema name {schema:?}"
    );
    let options = PgConnectOptions::from_str(url).with_context(|| "bad database url (postgres)")?;
    // Two replicas may create the schema at once; the loser's error is harmless.
    let mut conn = PgConnection::connect_with(&options)
        .await
        .map_err(|error| {
            let hint = if error.to_string().contains("certificate") {
                " (TLS: the server's certificate must chain to the CA named by sslrootcert or \
                 --database-ca-file, and name the URL's host)"
            } else {
                ""
            };
            anyhow::Error::new(error).context(format!("connecting to PostgreSQL{hint}"))
        })?;
    let created = conn
        .execute(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}"
        )))
        .await;
    if let Err(error) = created {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1::BIGINT FROM pg_namespace WHERE nspname = $1")
                .bind(schema)
                .fetch_optional(&mut conn)
                .await?;
        anyhow::ensure!(exists.is_some(), "creating schema {schema}: {error}");
    }
    let _ = conn.close().await;
    let set_path: Arc<str> = format!("SET search_path TO {schema}").into();
    PgPoolOptions::new()
        .max_connections(connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(move |conn, _| {
            let set_path = set_path.clone();
            Box::pin(async move {
                conn.execute(AssertSqlSafe(set_path)).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .context("opening the PostgreSQL pool")
}

/// Listens on PostgreSQL channel `channel` of the database at `url` until `shutdown`: calls
/// `on_listening(true)` once subscribed (notifications sent before then were missed) and
/// `on_listening(false)` when the connection is lost, `on_payload` for every notification, and
/// reconnects after a second. Callers poll as a fallback while not listening.
pub async fn listen(
    url: &str,
    channel: &str,
    shutdown: &tokio_util::sync::CancellationToken,
    mut on_listening: impl FnMut(bool),
    mut on_payload: impl FnMut(&str),
) {
    loop {
        let listening = async {
            let mut listener = sqlx::postgres::PgListener::connect(url).await?;
            listener.listen(channel).await?;
            on_listening(true);
            loop {
                let notification = listener.recv().await?;
                on_payload(notification.payload());
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            result = listening => {
                if let Err(error) = result {
                    tracing::warn!(%error, channel, "notifications lost; polling until they are back");
                }
            }
            _ = shutdown.cancelled() => return,
        }
        on_listening(false);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
