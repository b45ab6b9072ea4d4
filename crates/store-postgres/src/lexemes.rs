//! How common each word is among all passages, for weighting full-text
//! ranks: PostgreSQL's `ts_rank` ignores rarity, so a question's common
//! words would outweigh the word that names what it asks about. The
//! frequencies are the ones `ANALYZE` keeps for the `search` column
//! (`pg_stats.most_common_elems`: up to 1,000 lexemes and the share of
//! passages holding each), read at most once a minute per process. They are
//! over every organization's passages, as a search engine's are over its
//! whole index; until `ANALYZE` has run (autovacuum, or the maintenance
//! job), every word weighs the same.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;

const REFRESH: Duration = Duration::from_secs(60);

/// A lexeme held by about this many passages or more does not find passages
/// on its own (it still counts in their rank): ranking them all is what made
/// full text slow at 100,000 passages.
const COMMON_PASSAGES: f64 = 1000.0;

#[derive(Default)]
pub(crate) struct LexemeStats {
    cached: Mutex<Option<(Instant, Arc<Frequencies>)>>,
}

#[derive(Debug, Default)]
pub(crate) struct Frequencies {
    share: HashMap<String, f64>,
    /// The share assumed for a lexeme not listed (rarer than every listed one).
    unlisted: f64,
    /// Passages in all, as the planner estimates.
    passages: f64,
}

impl Frequencies {
    /// Whether so many passages hold the lexeme that it should not find passages.
    pub fn common(&self, lexeme: &str) -> bool {
        self.share(lexeme) * self.passages >= COMMON_PASSAGES
    }

    pub fn share(&self, lexeme: &str) -> f64 {
        self.share.get(lexeme).copied().unwrap_or(self.unlisted)
    }

    /// Inverse document frequency, as BM25 weighs it.
    pub fn weight(&self, lexeme: &str) -> f64 {
        let share = self.share(lexeme).clamp(1e-6, 1.0);
        (1.0 + (1.0 - share + 1e-3) / (share + 1e-3)).ln()
    }
}

impl LexemeStats {
    pub async fn get(&self, pool: &PgPool) -> Arc<Frequencies> {
        if let Some((at, frequencies)) = &*self.cached.lock().expect("lexeme stats")
            && at.elapsed() < REFRESH
        {
            return frequencies.clone();
        }
        let frequencies = Arc::new(read(pool).await.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "lexeme statistics unavailable");
            Frequencies::default()
        }));
        *self.cached.lock().expect("lexeme stats") = Some((Instant::now(), frequencies.clone()));
        frequencies
    }
}

async fn read(pool: &PgPool) -> Result<Frequencies, sqlx::Error> {
    let row: Option<(Vec<String>, Vec<f32>, f32)> = sqlx::query_as(
        "SELECT s.most_common_elems::text::text[], s.most_common_elem_freqs, c.reltuples
         FROM pg_stats s JOIN pg_class c ON c.oid = 'chunks'::regclass
         WHERE s.schemaname = current_schema() AND s.tablename = 'chunks'
           AND s.attname = 'search' AND s.most_common_elems IS NOT NULL",
    )
    .fetch_optional(pool)
    .await?;
    let Some((lexemes, freqs, passages)) = row else {
        return Ok(Frequencies::default());
    };
    // After one share per lexeme come the lowest and highest share, and the
    // share of empty values.
    let share: HashMap<String, f64> = lexemes
        .into_iter()
        .zip(freqs.iter().map(|f| f64::from(*f)))
        .collect();
    let lowest = share.values().copied().fold(f64::INFINITY, f64::min);
    Ok(Frequencies {
        unlisted: if lowest.is_finite() {
            lowest / 2.0
        } else {
            0.0
        },
        share,
        passages: f64::from(passages.max(0.0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rarer_words_weigh_more_and_words_most_passages_hold_are_common() {
        let frequencies = Frequencies {
            share: HashMap::from([("norman".into(), 0.3), ("rollo".into(), 0.01)]),
            unlisted: 0.005,
            passages: 10_000.0,
        };
        assert!(frequencies.weight("rollo") > frequencies.weight("norman"));
        assert!(frequencies.weight("fealty") > frequencies.weight("rollo"));
        assert!(frequencies.common("norman"), "3,000 passages hold it");
        assert!(!frequencies.common("rollo"), "100 do");
        let empty = Frequencies::default();
        assert_eq!(
            empty.weight("a"),
            empty.weight("b"),
            "no statistics: all alike"
        );
    }
}
