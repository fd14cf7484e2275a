//! How much room the database takes, table by table, for the storage gauges.

use super::{Db, Engine, Result};

/// Each table's bytes on disk, its indexes (and on PostgreSQL its TOAST) included. Cheap on
/// PostgreSQL; on SQLite `dbstat` reads every page of the file.
pub async fn table_sizes(db: &Db) -> Result<Vec<(String, i64)>> {
    match db.engine() {
        Engine::Sqlite => Ok(sqlx::query_as(
                "SELECT m.tbl_name, CAST(SUM(d.pgsize) AS BIGINT) FROM dbstat d \
                 JOIN sqlite_master m ON m.name = d.name \
                 WHERE m.tbl_name NOT LIKE 'sqlite_%' AND m.tbl_name NOT LIKE '_sqlx_%' \
                 GROUP BY m.tbl_name ORDER BY m.tbl_name",
        )
        .fetch_all(db.pool())
        .await?),
        Engine::Postgres => Ok(sqlx::query_as(
            "SELECT c.relname::TEXT, pg_total_relation_size(c.oid)::BIGINT FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname NOT LIKE '_sqlx_%' \
             ORDER BY c.relname",
        )
        .fetch_all(db.pool())
        .await?),
    }
}

/// The database's bytes on disk, and (SQLite) how many of them are free pages waiting to be
/// written again. Cheap on both engines.
pub async fn database_bytes(db: &Db) -> Result<(i64, Option<i64>)> {
    match db.engine() {
        Engine::Sqlite => {
            let (total, free): (i64, i64) = sqlx::query_as(
                "SELECT CAST(c.page_count * s.page_size AS BIGINT), CAST(f.freelist_count * s.page_size AS BIGINT) \
                 FROM pragma_page_count() c, pragma_freelist_count() f, pragma_page_size() s",
            )
            .fetch_one(db.pool())
            .await?;
            Ok((total, Some(free)))
        }
        Engine::Postgres => {
            let total: i64 =
                sqlx::query_scalar("SELECT pg_database_size(current_database())::BIGINT")
                    .fetch_one(db.pool())
                    .await?;
            Ok((total, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::fresh;

    #[tokio::test]
    async fn every_table_of_the_schema_has_a_size() {
        let (db, _url, _dir) = fresh().await;
        let sizes = table_sizes(&db).await.unwrap();
        let names: Vec<&str> = sizes.iter().map(|(n, _)| n.as_str()).collect();
        for table in [
            "events",
            "event_payloads",
            "notifications",
            "orders",
            "jobs",
        ] {
            assert!(names.contains(&table), "{table} in {names:?}");
        }
        assert!(sizes.iter().all(|(_, bytes)| *bytes >= 0));
        assert!(sizes.iter().any(|(n, bytes)| n == "events" && *bytes > 0));
        let (total, free) = database_bytes(&db).await.unwrap();
        assert!(total > 0);
        assert_eq!(free.is_some(), db.engine() == Engine::Sqlite);
    }
}
