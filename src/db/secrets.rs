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
