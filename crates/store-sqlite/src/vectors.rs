//! Vector search for the embedded store: each chatbot's vectors held in
//! memory as 8-bit codes (a quarter of their f32 size), scanned exactly per
//! question, and the best candidates re-scored from the stored f32 vectors.
//! Reading and decoding every vector from SQLite per question took 339 ms at
//! 100,000 passages (docs/PERFORMANCE.md).
//!
//! A chatbot's set is rebuilt when its documents change: the stamp is read
//! from the `documents` rows of its scope (count, passages, last change) on
//! every search, together with a counter this process bumps on each write,
//! so a write by another process on the same file is seen too.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

/// Memory for all cached sets; past it, the least recently used go.
/// 256 MiB holds about 650,000 passages of 384 dimensions.
const BUDGET_BYTES: usize = 256 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub org: uuid::Uuid,
    pub chatbot: uuid::Uuid,
    pub dims: usize,
}

/// What a set was built from; a different stamp means rebuild.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub generation: u64,
    pub documents: i64,
    pub passages: i64,
    pub last_change: i64,
}

/// Normalised vectors as signed 8-bit codes with one scale each.
pub(crate) struct Codes {
    dims: usize,
    seqs: Vec<i64>,
    codes: Vec<i8>,
    scales: Vec<f32>,
}

impl Codes {
    pub fn new(dims: usize) -> Self {
        Self {
            dims,
            seqs: Vec::new(),
            codes: Vec::new(),
            scales: Vec::new(),
        }
    }

    /// Adds a vector (of `dims` values; others are skipped).
    pub fn push(&mut self, seq: i64, vector: &[f32]) {
        if vector.len() != self.dims {
            return;
        }
        let (codes, scale) = quantize(vector);
        self.seqs.push(seq);
        self.codes.extend_from_slice(&codes);
        self.scales.push(scale);
    }

    fn bytes(&self) -> usize {
        self.codes.len() + self.seqs.len() * (8 + 4)
    }

    /// The `k` passages whose codes are most like `query`, best first, as
    /// (approximate cosine, seq).
    pub fn nearest(&self, query: &[f32], k: usize) -> Vec<(f32, i64)> {
        if query.len() != self.dims || k == 0 {
            return Vec::new();
        }
        let (q, q_scale) = quantize(query);
        let mut best: Vec<(f32, i64)> = Vec::with_capacity(k + 1);
        for (i, code) in self.codes.chunks_exact(self.dims).enumerate() {
            let dot: i32 = code
                .iter()
                .zip(&q)
                .map(|(a, b)| i32::from(*a) * i32::from(*b))
                .sum();
            let score = dot as f32 * self.scales[i] * q_scale;
            if best.len() < k || score > best[best.len() - 1].0 {
                let at = best.partition_point(|(s, _)| *s >= score);
                best.insert(at, (score, self.seqs[i]));
                best.truncate(k);
            }
        }
        best
    }
}

/// A vector scaled to unit length, then to -127..=127; the scale maps codes
/// back (`code * scale` ≈ the unit vector's value).
fn quantize(vector: &[f32]) -> (Vec<i8>, f32) {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    let max = vector.iter().fold(0f32, |m, x| m.max(x.abs()));
    if norm == 0.0 || max == 0.0 {
        return (vec![0; vector.len()], 0.0);
    }
    let unit_max = max / norm;
    let codes = vector
        .iter()
        .map(|x| ((x / norm) / unit_max * 127.0).round() as i8)
        .collect();
    (codes, unit_max / 127.0)
}

pub(crate) struct VectorCache {
    budget: usize,
    entries: Mutex<HashMap<Key, Entry>>,
    clock: std::sync::atomic::AtomicU64,
    generation: std::sync::atomic::AtomicU64,
}

impl Default for VectorCache {
    fn default() -> Self {
        Self::with_budget(BUDGET_BYTES)
    }
}

struct Entry {
    stamp: Stamp,
    codes: Arc<Codes>,
    used: u64,
}

impl VectorCache {
    fn with_budget(budget: usize) -> Self {
        Self {
            budget,
            entries: Mutex::default(),
            clock: Default::default(),
            generation: Default::default(),
        }
    }

    /// Called after every write of passages by this process.
    pub fn changed(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The set for `key` if it was built from `stamp`.
    pub fn get(&self, key: &Key, stamp: &Stamp) -> Option<Arc<Codes>> {
        let tick = self.tick();
        let mut entries = self.entries.lock().expect("vector cache");
        let entry = entries.get_mut(key).filter(|e| &e.stamp == stamp)?;
        entry.used = tick;
        Some(entry.codes.clone())
    }

    /// Keeps a set, making room by dropping the least recently used ones;
    /// a set larger than the whole budget is used once and not kept.
    pub fn put(&self, key: Key, stamp: Stamp, codes: Arc<Codes>) {
        if codes.bytes() > self.budget {
            return;
        }
        let tick = self.tick();
        let mut entries = self.entries.lock().expect("vector cache");
        entries.remove(&key);
        let mut used: usize = entries.values().map(|e| e.codes.bytes()).sum();
        while used + codes.bytes() > self.budget {
            let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| *k) else {
                break;
            };
            if let Some(gone) = entries.remove(&oldest) {
                used -= gone.codes.bytes();
            }
        }
        entries.insert(
            key,
            Entry {
                stamp,
                codes,
                used: tick,
            },
        );
    }

    fn tick(&self) -> u64 {
        self.clock
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(seed: u64, dims: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..dims)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2000) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn codes_find_the_same_nearest_vectors_as_exact_cosine() {
        let dims = 64;
        let vectors: Vec<Vec<f32>> = (0..500).map(|i| vector(i, dims)).collect();
        let mut codes = Codes::new(dims);
        for (i, v) in vectors.iter().enumerate() {
            codes.push(i as i64, v);
        }
        codes.push(999, &[1.0; 3]); // the wrong length: skipped
        for q in 0..20 {
            let query = vector(10_000 + q, dims);
            let mut exact: Vec<(f64, i64)> = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| (steward_store::cosine(&query, v), i as i64))
                .collect();
            exact.sort_by(|a, b| b.0.total_cmp(&a.0));
            let approximate = codes.nearest(&query, 20);
            assert_eq!(approximate.len(), 20);
            // The exact best is among the approximate 20 best, with its score close.
            let (score, seq) = exact[0];
            let found = approximate
                .iter()
                .find(|(_, s)| *s == seq)
                .expect("best kept");
            assert!(
                (f64::from(found.0) - score).abs() < 0.02,
                "{found:?} vs {score}"
            );
        }
        assert!(codes.nearest(&[1.0; 3], 5).is_empty());
    }

    #[test]
    fn a_stale_stamp_misses_and_the_budget_evicts_the_least_recently_used() {
        // Room for two one-vector sets of 4 dimensions (16 bytes each).
        let cache = VectorCache::with_budget(32);
        let key = |n: u128| Key {
            org: uuid::Uuid::from_u128(1),
            chatbot: uuid::Uuid::from_u128(n),
            dims: 4,
        };
        let stamp = |generation| Stamp {
            generation,
            documents: 1,
            passages: 1,
            last_change: 7,
        };
        let mut codes = Codes::new(4);
        codes.push(1, &[1.0, 0.0, 0.0, 0.0]);
        let codes = Arc::new(codes);
        cache.put(key(1), stamp(0), codes.clone());
        assert!(cache.get(&key(1), &stamp(0)).is_some());
        assert!(cache.get(&key(1), &stamp(1)).is_none());
        assert!(cache.get(&key(2), &stamp(0)).is_none());

        cache.put(key(2), stamp(0), codes.clone());
        assert!(
            cache.get(&key(1), &stamp(0)).is_some(),
            "1 is now the most recent"
        );
        cache.put(key(3), stamp(0), codes.clone());
        assert!(
            cache.get(&key(2), &stamp(0)).is_none(),
            "2 was least recently used"
        );
        assert!(cache.get(&key(1), &stamp(0)).is_some());
        assert!(cache.get(&key(3), &stamp(0)).is_some());

        let mut big = Codes::new(4);
        for seq in 0..3 {
            big.push(seq, &[1.0, 2.0, 3.0, 4.0]);
        }
        cache.put(key(4), stamp(0), Arc::new(big));
        assert!(
            cache.get(&key(4), &stamp(0)).is_none(),
            "larger than the budget"
        );
        assert!(
            cache.get(&key(1), &stamp(0)).is_some(),
            "and nothing evicted for it"
        );
        assert_eq!(quantize(&[0.0; 4]).1, 0.0, "a zero vector has no direction");
    }
}
