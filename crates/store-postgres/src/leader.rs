//! Leadership on PostgreSQL: a session advisory lock held on a connection taken
//! out of the pool, so that it lives exactly as long as that connection.

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};
use steward_store::{Leadership, StoreResult};

use crate::{PostgresStore, map_err};

struct AdvisoryLock {
    connection: Option<PgConnection>,
    name: String,
}

impl PostgresStore {
    pub(crate) async fn advisory_lock(
        &self,
        name: &str,
    ) -> StoreResult<Option<Box<dyn Leadership>>> {
        let mut connection = self.pool.acquire().await.map_err(map_err)?.detach();
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                .bind(name)
                .fetch_one(&mut connection)
                .await
                .map_err(map_err)?;
        if !locked {
            let _ = connection.close().await;
            return Ok(None);
        }
        Ok(Some(Box::new(AdvisoryLock {
            connection: Some(connection),
            name: name.to_owned(),
        })))
    }
}

#[async_trait]
impl Leadership for AdvisoryLock {
    async fn still_leading(&mut self) -> StoreResult<bool> {
        let Some(connection) = self.connection.as_mut() else {
            return Ok(false);
        };
        // The lock lives as long as the session: a live connection still holds it.
        if connection.ping().await.is_ok() {
            return Ok(true);
        }
        self.connection = None;
        Ok(false)
    }

    async fn resign(mut self: Box<Self>) {
        if let Some(mut connection) = self.connection.take() {
            let _ = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
                .bind(&self.name)
                .execute(&mut connection)
                .await;
            let _ = connection.close().await;
        }
    }
}
