//! Leadership on SQLite: a lease row, renewed by its holder.

use async_trait::async_trait;
use sqlx::SqlitePool;
use steward_store::{Leadership, StoreResult, now};

use crate::{SqliteStore, map_err, to_micros};

struct Lease {
    writer: SqlitePool,
    name: String,
    holder: String,
    ttl: chrono::Duration,
}

impl SqliteStore {
    pub(crate) async fn lease(
        &self,
        name: &str,
        holder: &str,
        ttl: chrono::Duration,
    ) -> StoreResult<Option<Box<dyn Leadership>>> {
        let at = now();
        let taken: Option<String> = sqlx::query_scalar(
            "INSERT INTO leader_leases (name, holder, expires_at) VALUES (?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leader_leases.expires_at < ? OR leader_leases.holder = excluded.holder
             RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(to_micros(at + ttl))
        .bind(to_micros(at))
        .fetch_optional(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(taken.map(|_| {
            Box::new(Lease {
                writer: self.writer.clone(),
                name: name.to_owned(),
                holder: holder.to_owned(),
                ttl,
            }) as Box<dyn Leadership>
        }))
    }
}

#[async_trait]
impl Leadership for Lease {
    async fn still_leading(&mut self) -> StoreResult<bool> {
        // Still ours if nobody took it over, even if it ran out meanwhile.
        let renewed =
            sqlx::query("UPDATE leader_leases SET expires_at = ? WHERE name = ? AND holder = ?")
                .bind(to_micros(now() + self.ttl))
                .bind(&self.name)
                .bind(&self.holder)
                .execute(&self.writer)
                .await
                .map_err(map_err)?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn resign(self: Box<Self>) {
        let _ = sqlx::query("DELETE FROM leader_leases WHERE name = ? AND holder = ?")
            .bind(&self.name)
            .bind(&self.holder)
            .execute(&self.writer)
            .await;
    }
}
