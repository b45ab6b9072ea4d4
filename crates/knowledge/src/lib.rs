//! Knowledge: what a chatbot knows. Originals go to the blob store
//! ([`blobs`]); the `ingest` job sniffs their format ([`sniff`]), extracts
//! their text with its structure ([`extract`]), cuts it into passages
//! ([`chunk`]) and indexes them in the store (PDF is read in a child process:
//! [`pdf`]); [`retrieve`] finds the passages
//! that answer a question.

pub mod blobs;
pub mod chunk;
pub mod crawl;
pub mod documents;
pub mod docx;
pub mod extract;
pub mod fetch;
pub mod ingest;
pub mod pdf;
pub mod retrieve;
pub mod sniff;

pub use blobs::{BlobError, Blobs, EXPORTS_PREFIX};
pub use crawl::CrawlStep;
pub use documents::{AddError, Original, add_original, add_originals, add_url, label_from};
pub use fetch::{FetchError, FetchPolicy, Fetcher};
pub use ingest::{IndexVectors, Ingest};
pub use pdf::{PdfLimits, PdfReader};
pub use retrieve::{Passage, Retriever, Source, embedder_from_config};
