//! The shared row mappers (`steward_store::sql::rows`) over PostgreSQL's rows,
//! for the areas not on the shared statements yet.

use sqlx::postgres::PgRow;
use steward_store::sql::rows as shared;
use steward_store::*;

use crate::sql::Record;

macro_rules! rows {
    ($($name:ident -> $record:ty),* $(,)?) => {$(
        pub fn $name(row: &PgRow) -> StoreResult<$record> {
            shared::$name(&Record(row))
        }
    )*};
}

rows!(
    chunk_hit -> ChunkHit,
    job -> Job,
);
