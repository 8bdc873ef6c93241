//! Batch rows: a batch statement takes ONE JSON array parameter ([`super::json_rows`]) whose
//! elements are JSON objects, one per row, each the fields of a struct declared with
//! [`batch_row!`](crate::batch_row); the statement reads each field by its name
//! (`rows.value ->> 'amount'`, see [`super::Engine::json_rows`]). The macro writes the struct, its
//! serialisation and its [`BatchRow::FIELDS`] from one field list, so the keys written and the
//! names read cannot drift apart.

#[doc(hidden)]
pub use serde;

/// The SQL type a field is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Text,
    BigInt,
}

/// One field of a batch row: its key in the row's JSON object and its SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub sql: SqlType,
}

impl Field {
    /// This field of the row `value` (a JSON object), as its SQL type.
    pub fn read_in(self, value: &str) -> String {
        let name = self.name;
        match self.sql {
            SqlType::Text => format!("{value} ->> '{name}'"),
            SqlType::BigInt => format!("CAST({value} ->> '{name}' AS BIGINT)"),
        }
    }

    /// This field of the batch's current row (`rows.value`, see [`super::Engine::json_rows`]).
    pub fn read(self) -> String {
        self.read_in("rows.value")
    }
}

/// A row of a batch statement, declared with [`batch_row!`](crate::batch_row).
pub trait BatchRow: serde::Serialize {
    /// The fields, in declaration order.
    const FIELDS: &'static [Field];

    /// The fields' names, `a, b, c`: the column list of an INSERT whose columns are named as
    /// the fields.
    fn columns() -> String {
        let names: Vec<&str> = Self::FIELDS.iter().map(|field| field.name).collect();
        names.join(", ")
    }

    /// Every field of the current row, in the order of [`BatchRow::columns`]: the SELECT list
    /// that fills those columns.
    fn select() -> String {
        let reads: Vec<String> = Self::FIELDS.iter().map(|field| field.read()).collect();
        reads.join(", ")
    }
}

/// The field `name` of `fields`; evaluated in a const context (as the `field` function
/// [`batch_row!`](crate::batch_row) writes is, inside `const { .. }`), a name that is not
/// among them stops the build.
pub const fn field(fields: &'static [Field], name: &str) -> Field {
    let mut index = 0;
    while index < fields.len() {
        if same(fields[index].name.as_bytes(), name.as_bytes()) {
            return fields[index];
        }
        index += 1;
    }
    panic!("a batch row has no field of that name")
}

/// Byte-wise equality, usable in a const fn.
const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut index = 0;
    while index < a.len() {
        if a[index] != b[index] {
            return false;
        }
        index += 1;
    }
    true
}

/// Declares a batch row: the struct, its serialisation as a JSON object keyed by the field
/// names, [`BatchRow::FIELDS`] and an associated `const fn field(name)` for statements that read
/// one field (`const { Row::field("amount") }.read()`, checked at build time). Each field names
/// its SQL type ([`SqlType`]):
///
/// ```
/// onlinebank_core::batch_row! {
///     /// A deposit to record.
///     pub struct Deposit<'a> {
///         pub account_no: &'a str => Text,
///         pub amount: i64 => BigInt,
///     }
/// }
/// ```
#[macro_export]
macro_rules! batch_row {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident $(<$lt:lifetime>)? {
            $( $(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty => $sql:ident ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        $vis struct $name $(<$lt>)? {
            $( $(#[$field_meta])* $field_vis $field: $ty ),+
        }

        impl $(<$lt>)? $crate::db::batch::BatchRow for $name $(<$lt>)? {
            const FIELDS: &'static [$crate::db::batch::Field] = &[$(
                $crate::db::batch::Field {
                    name: stringify!($field),
                    sql: $crate::db::batch::SqlType::$sql,
                }
            ),+];
        }

        impl $(<$lt>)? $name $(<$lt>)? {
            /// The field `name`; inside `const { .. }` a name the row lacks stops the build.
            #[allow(dead_code)]
            pub const fn field(name: &str) -> $crate::db::batch::Field {
                $crate::db::batch::field(
                    <Self as $crate::db::batch::BatchRow>::FIELDS,
                    name,
                )
            }
        }

        impl $(<$lt>)? $crate::db::batch::serde::Serialize for $name $(<$lt>)? {
            fn serialize<S: $crate::db::batch::serde::Serializer>(
                &self,
                serializer: S,
            ) -> Result<S::Ok, S::Error> {
                use $crate::db::batch::serde::ser::SerializeStruct;
                let fields = <Self as $crate::db::batch::BatchRow>::FIELDS.len();
                let mut row = serializer.serialize_struct(stringify!($name), fields)?;
                $( row.serialize_field(stringify!($field), &self.$field)?; )+
                row.end()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::batch_row! {
        /// A sample row.
        struct Sample<'a> {
            name: &'a str => Text,
            amount: i64 => BigInt,
        }
    }

    #[test]
    fn a_row_is_an_object_keyed_by_its_fields() {
        let row = Sample {
            name: "o'\"né\"",
            amount: -7,
        };
        let json = serde_json::to_value(&row).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut names: Vec<&str> = Sample::FIELDS.iter().map(|field| field.name).collect();
        names.sort_unstable();
        assert_eq!(keys, names);
        assert_eq!(json["name"], "o'\"né\"");
        assert_eq!(json["amount"], -7);
    }

    #[test]
    fn statements_read_fields_by_name() {
        assert_eq!(Sample::columns(), "name, amount");
        assert_eq!(
            Sample::select(),
            "rows.value ->> 'name', CAST(rows.value ->> 'amount' AS BIGINT)"
        );
        assert_eq!(
            const { Sample::field("amount") }.read_in("keys.value"),
            "CAST(keys.value ->> 'amount' AS BIGINT)"
        );
    }

    /// Rows read back by name on `db`'s engine, text with quotes and unicode intact.
    async fn rows_read_back_by_name(db: crate::db::Db) {
        let rows = [
            Sample {
                name: "plain",
                amount: 1,
            },
            Sample {
                name: "o'\"né\" 例え \\ 🙂",
                amount: -7_000_000_000_000,
            },
        ];
        let mut conn = db.read().await.unwrap();
        let sql = format!(
            "SELECT {} FROM {} WHERE true ORDER BY rows.key",
            Sample::select(),
            conn.engine().json_rows("$1")
        );
        let back: Vec<(String, i64)> = conn
            .fetch_all(
                &sql,
                crate::args![crate::db::json_rows(&rows).unwrap().as_str()],
            )
            .await
            .unwrap();
        let sent: Vec<(String, i64)> = rows
            .iter()
            .map(|row| (row.name.to_owned(), row.amount))
            .collect();
        assert_eq!(back, sent);
    }

    #[tokio::test]
    async fn rows_are_read_back_by_name_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("b.db").display().to_string(), "b")
            .await
            .unwrap();
        rows_read_back_by_name(db).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (ONLINEBANK_TEST_POSTGRES): ./.ci/run runs it"]
    async fn rows_are_read_back_by_name_on_postgres() {
        let db = crate::db::testing::postgres_db("batch", "batch").await;
        rows_read_back_by_name(db).await;
    }
}
