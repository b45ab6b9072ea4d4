//! Keeping the word index of messages' text (`messages_fts`, migration
//! 0014) free of deleted messages' words.
//!
//! FTS5 deletes a message's entries by marking them deleted; its words stay
//! in the index's pages until the pages holding them are merged. By default
//! FTS5 then rewrites any part of the index in which a tenth of the entries
//! are marked, inside whichever transaction tips it over: under an erasure
//! that was a commit every few batches rewriting most of the index while
//! every other write waited, for up to 270 ms (docs/PERFORMANCE.md).
//! Migration 0027 turns that off, and [`purge_deleted`] does the rewriting
//! after an erasure or a retention run instead, in short steps.

use sqlx::Row;
use steward_store::StoreResult;

use crate::SqliteStore;
use crate::map_err;

/// Pages of the index one step rewrites (a few milliseconds of the writer).
const PAGES_PER_STEP: i64 = 200;

/// Rewrites the whole index into one part without the entries marked
/// deleted (FTS5's 'optimize', a step per transaction). New messages stored
/// meanwhile add parts of their own; the steps stop once the index as it
/// was at the start has been rewritten, rather than chase them.
pub(crate) async fn purge_deleted(store: &SqliteStore) -> StoreResult<()> {
    let mut reader = store.reader.acquire().await.map_err(map_err)?;
    let pages: i64 = sqlx::query("SELECT COUNT(*) AS n FROM messages_fts_data")
        .fetch_one(&mut *reader)
        .await
        .map_err(map_err)?
        .get("n");
    drop(reader);
    // Twice what the pages need: "about" N pages is FTS5's own word.
    let most = 2 * (pages / PAGES_PER_STEP + 1);
    let changes = "SELECT total_changes() AS n";
    for _ in 0..most {
        let mut tx = store.begin_write().await?;
        let before: i64 = sqlx::query(changes)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?
            .get("n");
        // A negative count merges every part into one, however few.
        sqlx::query("INSERT INTO messages_fts (messages_fts, rank) VALUES ('merge', ?)")
            .bind(-PAGES_PER_STEP)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let after: i64 = sqlx::query(changes)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?
            .get("n");
        tx.commit().await.map_err(map_err)?;
        // FTS5's documented test: fewer than two rows changed, nothing was
        // left to merge.
        if after - before < 2 {
            break;
        }
    }
    Ok(())
}
