//! Distributed mode: the real PostgreSQL and Kafka that .ci/run (or dev/*.sh) started.

/// A fresh PostgreSQL database and a Kafka namespace of their own for one test.
pub struct Distributed {
    pub database: String,
    pub bus: String,
}

impl Distributed {
    /// Reads `ONLINEBANK_TEST_POSTGRES` (a server URL) and `ONLINEBANK_TEST_KAFKA` (brokers),
    /// creates a database named after `name` plus a random suffix, and a bus URL with a
    /// namespace of the same name. Panics with instructions when the services are not given.
    pub async fn create(name: &str, partitions: u32) -> Distributed {
        let (Ok(server), Ok(kafka)) = (
            std::env::var("ONLINEBANK_TEST_POSTGRES"),
            std::env::var("ONLINEBANK_TEST_KAFKA"),
        ) else {
            panic!(
                "distributed-mode tests need a real PostgreSQL and Kafka: run ./.ci/run, or start \
                 them with dev/postgres.sh start and dev/kafka.sh start and set \
                 ONLINEBANK_TEST_POSTGRES=$(dev/postgres.sh url) ONLINEBANK_TEST_KAFKA=127.0.0.1:9092"
            )
        };
        let database = onlinebank_core::db::testing::fresh_postgres(name)
            .await
            .unwrap_or_else(|error| panic!("creating a database on {server}: {error:#}"));
        let unique = database.rsplit('/').next().unwrap_or(name).to_owned();
        Distributed {
            database,
            bus: format!("kafka://{kafka}?partitions={partitions}&namespace={unique}"),
        }
    }

    /// The knobs that put a role on these services.
    pub fn knobs(&self) -> Vec<String> {
        vec![
            "--database".into(),
            self.database.clone(),
            "--bus".into(),
            self.bus.clone(),
        ]
    }
}
