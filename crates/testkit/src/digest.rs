//! Every table's rows, reduced to a count and a digest, to check that a copy
//! of a database (a restored backup) holds exactly what the original held.

use std::collections::BTreeMap;

use sha2::Digest;
use sqlx::{Connection, Row};
use steward_store::quote_identifier;

/// Per table: `rows:digest`, over every row in a canonical text form.
pub async fn database_digest(url: &str) -> BTreeMap<String, String> {
    if url.starts_with("postgres") {
        postgres(url).await
    } else {
        sqlite(url).await
    }
}

async fn postgres(url: &str) -> BTreeMap<String, String> {
    let mut db = sqlx::PgConnection::connect(url).await.expect("connect");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY 1",
    )
    .fetch_all(&mut db)
    .await
    .expect("tables");
    let mut out = BTreeMap::new();
    for table in tables {
        let digest: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '')
             FROM {} t",
            quote_identifier(&table)
        )))
        .fetch_one(&mut db)
        .await
        .expect("digest");
        out.insert(table, digest);
    }
    out
}

async fn sqlite(url: &str) -> BTreeMap<String, String> {
    let mut db = sqlx::SqliteConnection::connect(url).await.expect("open");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM pragma_table_list
         WHERE schema = 'main' AND type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1",
    )
    .fetch_all(&mut db)
    .await
    .expect("tables");
    let mut out = BTreeMap::new();
    for table in tables {
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                .bind(&table)
                .fetch_all(&mut db)
                .await
                .expect("columns");
        // quote() renders every value exactly, blobs as hex.
        let line = columns
            .iter()
            .map(|c| format!("quote({})", quote_identifier(c)))
            .collect::<Vec<_>>()
            .join(" || ',' || ");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {line} AS line FROM {} ORDER BY 1",
            quote_identifier(&table)
        )))
        .fetch_all(&mut db)
        .await
        .expect("rows");
        let lines: Vec<String> = rows.iter().map(|r| r.get("line")).collect();
        out.insert(
            table,
            format!(
                "{}:{}",
                lines.len(),
                hex::encode(sha2::Sha256::digest(lines.join("\n").as_bytes()))
            ),
        );
    }
    out
}
