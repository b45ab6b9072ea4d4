//! The shared row mappers (`steward_store::sql::rows`) over SQLite's rows,
//! for the areas not on the shared statements yet.

use sqlx::sqlite::SqliteRow;
use steward_store::sql::rows as shared;
use steward_store::*;

use crate::sql::Record;

macro_rules! rows {
    ($($name:ident -> $record:ty),* $(,)?) => {$(
        pub fn $name(row: &SqliteRow) -> StoreResult<$record> {
            shared::$name(&Record(row))
        }
    )*};
}

rows!(
    chunk_hit -> ChunkHit,
    job -> Job,
);
