//! Leadership: one holder at a time for a name, across processes. PostgreSQL
//! holds an advisory lock on a connection of its own (lost the moment that
//! connection is); SQLite keeps a lease row that the leader renews and that
//! another holder may take once it has expired.

use async_trait::async_trait;

use crate::StoreResult;

#[async_trait]
pub trait Leadership: Send + Sync {
    /// Whether this holder still leads; renews the lease where there is one.
    /// False means stop acting as leader at once.
    async fn still_leading(&mut self) -> StoreResult<bool>;

    /// Gives leadership up now, so another holder need not wait.
    async fn resign(self: Box<Self>);
}
