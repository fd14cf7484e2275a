//! Every sealed secret Bursar stores, with the binding it was sealed under: what the start-up
//! key check opens and what `bursar vault rotate` re-seals.

use super::{Db, Result};

/// One sealed column: its table, the column that names the row, and the vault field name.
struct SealedColumn {
    table: &'static str,
    id_column: &'static str,
    column: &'static str,
    field: &'static str,
}

/// Every sealed column of the schema: each `*_enc` column of every table is here (a test
/// compares this list with the migrated schema on both engines).
const SEALED: &[SealedColumn] = &[
    SealedColumn {
        table: "connections",
        id_column: "store_id",
        column: "secret_key_enc",
        field: "secret_key",
    },
    SealedColumn {
        table: "connections",
        id_column: "store_id",
        column: "webhook_secret_enc",
        field: "webhook_secret",
    },
    SealedColumn {
        table: "idempotency_keys",
        // The row as `db::idempotency::vault_row` names it.
        id_column: "api_key_id || ':' || idem_key",
        column: "response_enc",
        field: "response",
    },
    SealedColumn {
        table: "notification_endpoints",
        id_column: "id",
        column: "secret_enc",
        field: "secret",
    },
    SealedColumn {
        table: "notification_endpoints",
        id_column: "id",
        column: "old_secret_enc",
        field: "old_secret",
    },
    SealedColumn {
        table: "orders",
        id_column: "id",
        column: "client_secret_enc",
        field: "client_secret",
    },
    SealedColumn {
        table: "webhook_endpoints",
        id_column: "name",
        column: "secret_enc",
        field: "webhook_secret",
    },
];

/// A stored ciphertext and where it belongs.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub table: &'static str,
    id_column: &'static str,
    column: &'static str,
    pub row: String,
    pub field: &'static str,
    pub value: String,
}

/// Every sealed value in the database.
pub async fn all(db: &Db) -> Result<Vec<Sealed>> {
    let mut out = Vec::new();
    for c in SEALED {
        let sql = format!(
            "SELECT {id}, {col} FROM {table} WHERE {col} IS NOT NULL",
            id = c.id_column,
            col = c.column,
            table = c.table
        );
        for (row, value) in sqlx::query_as::<_, (String, String)>(&sql)
            .fetch_all(db.pool())
            .await?
        {
            out.push(Sealed {
                table: c.table,
                id_column: c.id_column,
                column: c.column,
                row,
                field: c.field,
                value,
            });
        }
    }
    Ok(out)
}

/// Replaces `sealed` with `fresh` if the row still holds `sealed`; false if it changed since.
pub async fn swap(db: &Db, sealed: &Sealed, fresh: &str) -> Result<bool> {
    let _turn = db.write_turn().await;
    let sql = format!(
        "UPDATE {table} SET {col} = $1 WHERE {id} = $2 AND {col} = $3",
        table = sealed.table,
        col = sealed.column,
        id = sealed.id_column
    );
    let done = sqlx::query(&sql)
        .bind(fresh)
        .bind(&sealed.row)
        .bind(&sealed.value)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `*_enc` column of the migrated schema, as (table, column), sorted.
    async fn enc_columns(db: &Db) -> Vec<(String, String)> {
        let sql = match db.engine() {
            super::super::Engine::Sqlite => {
                "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                 WHERE m.type = 'table' AND p.name LIKE '%\\_enc' ESCAPE '\\'"
            }
            super::super::Engine::Postgres => {
                "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND column_name LIKE '%\\_enc' ESCAPE '\\'"
            }
        };
        let mut found: Vec<(String, String)> =
            sqlx::query_as(sql).fetch_all(db.pool()).await.unwrap();
        found.sort();
        found
    }

    #[tokio::test]
    async fn every_sealed_column_of_the_schema_is_listed() {
        let (db, _, _dir) = crate::db::testing::fresh().await;
        let mut listed: Vec<(String, String)> = SEALED
            .iter()
            .map(|c| (c.table.to_owned(), c.column.to_owned()))
            .collect();
        listed.sort();
        let found = enc_columns(&db).await;
        assert!(!found.is_empty(), "the schema query found no sealed column");
        assert_eq!(
            listed, found,
            "db::secrets::SEALED differs from the schema's *_enc columns"
        );
    }
}
