//! Crawling a site into a chatbot's knowledge, one page per `crawl` job.
//!
//! Each step fetches one page through the [`Fetcher`] (so every address is
//! checked), adds it as a document (ingested by its own job), queues the
//! page's links, then saves the crawl's progress and frontier and enqueues the
//! next step, `knowledge.crawl_delay_ms` later (or the site's `Crawl-delay`),
//! in one transaction. A crawl therefore survives restarts, and a step that
//! is retried after a crash redoes only its own page (documents are unique by
//! URL).
//!
//! The crawler stays on the root's host, honours robots.txt, reads
//! sitemap.xml, dedupes by canonical URL and by content hash, and stops at
//! its bounds: pages, depth, bytes and time.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use steward_config::KnowledgeConfig;
use steward_domain::jobs::CrawlArgs;
use steward_domain::{CrawlStatus, DocumentId, DocumentSource};
use steward_jobs::{JobError, JobHandler};
use steward_store::{
    Crawl, CrawlProgress, Job, NewDocument, NewJob, Store, StoreError, TenantScope,
};

use crate::blobs::Blobs;
use crate::fetch::Fetcher;

/// Longest URL the crawler follows; longer ones are traps or tracking.
const MAX_URL_CHARS: usize = 2048;
/// Most URLs a crawl remembers (seen and queued), per page it may fetch.
const DISCOVERED_PER_PAGE: usize = 20;
/// Most entries read from a sitemap.
const MAX_SITEMAP_URLS: usize = 5_000;

/// What a crawl has seen and has yet to fetch, saved after every step.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CrawlState {
    pub started: bool,
    /// Unix seconds when the first step ran: the time bound counts from here.
    pub started_at: i64,
    pub frontier: VecDeque<(String, i32)>,
    pub seen: HashSet<String>,
    /// SHA-256 (hex) of every page added: the same content twice is one page.
    pub hashes: HashSet<String>,
    pub robots: Robots,
}

pub struct CrawlStep {
    pub store: Arc<dyn Store>,
    pub blobs: Blobs,
    pub fetcher: Fetcher,
    pub limits: KnowledgeConfig,
}

fn now_secs() -> i64 {
    steward_store::now().timestamp()
}

#[async_trait]
impl JobHandler for CrawlStep {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let result = self.step(job).await;
        if let Err(JobError::Retryable(why)) = &result
            && job.attempts >= job.max_attempts
        {
            self.give_up(job, why).await;
        }
        result
    }
}

impl CrawlStep {
    /// The step's last attempt failed (the site, blob store or database was
    /// out of reach each time): the crawl ends `failed`, saying why, rather
    /// than showing `running` for ever. If the database is what failed, this
    /// fails too, and the dead-letter list is where the crawl shows.
    async fn give_up(&self, job: &Job, why: &str) {
        let (Some(org), Ok(CrawlArgs { crawl_id: id })) = (job.org_id, job.args()) else {
            return;
        };
        let scope = TenantScope::for_job(org);
        let Ok(crawl) = self.store.crawl(&scope, id).await else {
            return;
        };
        let state: CrawlState = serde_json::from_value(crawl.state.clone()).unwrap_or_default();
        let mut progress = crawl.progress.clone();
        progress.note = Some(format!("stopped: its last attempt failed: {why}"));
        if let Err(e) = self
            .save(&scope, &crawl, CrawlStatus::Failed, &progress, &state, None)
            .await
        {
            tracing::warn!(crawl = %id, error = ?e, "could not mark a stopped crawl failed");
        }
    }

    async fn step(&self, job: &Job) -> Result<(), JobError> {
        let org = job
            .org_id
            .ok_or_else(|| JobError::Permanent("a crawl job names no organization".into()))?;
        let id = job.args::<CrawlArgs>()?.crawl_id;
        let scope = TenantScope::for_job(org);
        let crawl = match self.store.crawl(&scope, id).await {
            Ok(crawl) => crawl,
            Err(StoreError::NotFound) => return Ok(()), // its chatbot was deleted
            Err(e) => return Err(e.into()),
        };
        if matches!(crawl.status, CrawlStatus::Done | CrawlStatus::Failed) {
            return Ok(());
        }
        let mut state: CrawlState = serde_json::from_value(crawl.state.clone()).unwrap_or_default();
        let mut progress = crawl.progress.clone();
        let root = match Url::parse(&crawl.root_url) {
            Ok(root) => root,
            Err(e) => {
                progress.note = Some(format!("the root URL is invalid: {e}"));
                return self
                    .save(&scope, &crawl, CrawlStatus::Failed, &progress, &state, None)
                    .await;
            }
        };

        if !state.started {
            self.start(&root, &crawl, &mut state).await;
            if state.frontier.is_empty() {
                progress.note = Some("robots.txt disallows the start page".into());
            }
        } else if let Some(stop) = self.bound_reached(&crawl, &progress, &state) {
            progress.note = Some(stop);
            progress.pages_queued = 0;
            return self
                .save(&scope, &crawl, CrawlStatus::Done, &progress, &state, None)
                .await;
        } else {
            self.visit_next(&scope, &root, &crawl, &mut progress, &mut state)
                .await?;
        }
        progress.pages_queued = state.frontier.len() as i32;
        if state.frontier.is_empty() {
            progress
                .note
                .get_or_insert_with(|| "every page found was visited".into());
            return self
                .save(&scope, &crawl, CrawlStatus::Done, &progress, &state, None)
                .await;
        }
        let delay = state
            .robots
            .delay_ms
            .unwrap_or(0)
            .max(self.limits.crawl_delay_ms)
            .min(60_000);
        let at = steward_store::now() + chrono::Duration::milliseconds(delay as i64);
        let next = NewJob::of(&CrawlArgs { crawl_id: crawl.id }, job.max_attempts)
            .for_org(org)
            .at(at);
        self.save(
            &scope,
            &crawl,
            CrawlStatus::Running,
            &progress,
            &state,
            Some(next),
        )
        .await
    }

    async fn save(
        &self,
        scope: &TenantScope,
        crawl: &Crawl,
        status: CrawlStatus,
        progress: &CrawlProgress,
        state: &CrawlState,
        next: Option<NewJob>,
    ) -> Result<(), JobError> {
        let state = serde_json::to_value(state).expect("crawl state serializes");
        match self
            .store
            .save_crawl(scope, crawl.id, status, progress, &state, next)
            .await
        {
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The first step: robots.txt, sitemaps, and the root itself.
    async fn start(&self, root: &Url, crawl: &Crawl, state: &mut CrawlState) {
        state.started = true;
        state.started_at = now_secs();
        let robots_url = root.join("/robots.txt").expect("a path joins");
        if let Ok(found) = self.fetcher.fetch(robots_url.as_str()).await
            && let Ok(text) = std::str::from_utf8(&found.bytes)
        {
            state.robots = Robots::parse(text);
        }
        let root = canonical(root);
        state.seen.insert(root.to_string());
        if !state.robots.allows(root.path()) {
            return; // nothing queued: the crawl ends, saying so
        }
        state.frontier.push_back((root.to_string(), 0));
        if crawl.max_depth < 1 {
            return;
        }
        let mut sitemaps: Vec<String> = state.robots.sitemaps.clone();
        sitemaps.push(root.join("/sitemap.xml").expect("a path joins").to_string());
        for sitemap in sitemaps.iter().take(3) {
            let Ok(found) = self.fetcher.fetch(sitemap).await else {
                continue;
            };
            let text = String::from_utf8_lossy(&found.bytes);
            for loc in sitemap_locs(&text) {
                if let Ok(url) = Url::parse(&loc) {
                    self.discover(&root, url, 1, crawl, state);
                }
            }
        }
    }

    /// A reason to stop, if a bound is reached.
    fn bound_reached(
        &self,
        crawl: &Crawl,
        progress: &CrawlProgress,
        state: &CrawlState,
    ) -> Option<String> {
        let visited = progress.pages_done + progress.pages_failed;
        if visited >= crawl.max_pages {
            return Some(format!("stopped at its limit of {} pages", crawl.max_pages));
        }
        if progress.bytes >= self.limits.crawl_max_bytes as i64 {
            return Some(format!(
                "stopped at the limit of {} bytes",
                self.limits.crawl_max_bytes
            ));
        }
        if now_secs() - state.started_at >= self.limits.crawl_max_secs as i64 {
            return Some(format!(
                "stopped at the time limit of {} s",
                self.limits.crawl_max_secs
            ));
        }
        None
    }

    /// Fetches the next allowed page of the frontier, adds it, queues its links.
    async fn visit_next(
        &self,
        scope: &TenantScope,
        root: &Url,
        crawl: &Crawl,
        progress: &mut CrawlProgress,
        state: &mut CrawlState,
    ) -> Result<(), JobError> {
        let Some((url, depth)) = state.frontier.pop_front() else {
            return Ok(());
        };
        let page = match self.fetcher.fetch(&url).await {
            Ok(page) => page,
            Err(e) => {
                progress.pages_failed += 1;
                tracing::info!(crawl = %crawl.id, %url, error = %e, "crawl: page failed");
                return Ok(());
            }
        };
        progress.bytes += page.bytes.len() as i64;
        // A redirect may land off the site, or on a page already seen.
        let landed = canonical(&page.url);
        if !same_site(root, &landed) {
            progress.pages_failed += 1;
            return Ok(());
        }
        let hash = hex::encode(Sha256::digest(&page.bytes));
        if !state.hashes.insert(hash)
            || (landed.as_str() != url && !state.seen.insert(landed.to_string()))
        {
            return Ok(()); // the same content, or the same page under another address
        }
        let html = page.content_type.contains("html");
        let (title, declared, links) = if html {
            let text = String::from_utf8_lossy(&page.bytes).into_owned();
            let base = page.url.clone();
            tokio::task::spawn_blocking(move || page_links(&text, &base))
                .await
                .unwrap_or_default()
        } else {
            (None, None, Vec::new())
        };
        // A page that names another canonical address already seen is a copy.
        if let Some(declared) = declared.map(|d| canonical(&d))
            && declared != landed
            && same_site(root, &declared)
            && !state.seen.insert(declared.to_string())
        {
            return Ok(());
        }

        // The page is written before its document is added (or refreshed),
        // so the ingest job that adding queues reads this copy, never an older one.
        let key = Blobs::page_key(scope.org_id(), crawl.chatbot_id, landed.as_str());
        self.blobs
            .put(&key, page.bytes)
            .await
            .map_err(|e| JobError::Retryable(format!("blob store: {e}")))?;
        let document = NewDocument {
            id: DocumentId::new(),
            chatbot_id: Some(crawl.chatbot_id),
            source: DocumentSource::Crawl,
            label: title
                .unwrap_or_else(|| landed.to_string())
                .chars()
                .take(200)
                .collect(),
            url: Some(landed.to_string()),
            blob_key: Some(key),
            bytes: 0,
        };
        self.store
            .add_document(scope, document, self.limits.ingest_attempts)
            .await?;
        progress.pages_done += 1;
        if depth < crawl.max_depth {
            for link in links {
                self.discover(root, link, depth + 1, crawl, state);
            }
        }
        Ok(())
    }

    /// Queues a URL if it is on the site, allowed, new and within bounds.
    fn discover(&self, root: &Url, url: Url, depth: i32, crawl: &Crawl, state: &mut CrawlState) {
        let url = canonical(&url);
        let limit = (crawl.max_pages as usize).saturating_mul(DISCOVERED_PER_PAGE);
        if !matches!(url.scheme(), "http" | "https")
            || !same_site(root, &url)
            || url.as_str().len() > MAX_URL_CHARS
            || depth > crawl.max_depth
            || state.seen.len() >= limit
            || !state.robots.allows(url.path())
        {
            return;
        }
        if state.seen.insert(url.to_string()) {
            state.frontier.push_back((url.to_string(), depth));
        }
    }
}

/// Same host and port (http and https on their default ports both count),
/// so that a crawl stays on its site.
fn same_site(root: &Url, url: &Url) -> bool {
    root.host_str() == url.host_str() && root.port() == url.port()
}

/// One address per page: no fragment, no tracking parameters, the rest of
/// the query in order.
pub fn canonical(url: &Url) -> Url {
    let mut url = url.clone();
    url.set_fragment(None);
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !(k.starts_with("utm_") || k == "fbclid" || k == "gclid"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url
}

/// A page's title, its declared canonical address, and its links, resolved.
pub fn page_links(html: &str, base: &Url) -> (Option<String>, Option<Url>, Vec<Url>) {
    use scraper::{Html, Selector};
    let page = Html::parse_document(html);
    let select = |s: &str| Selector::parse(s).expect("a valid selector");
    let title = page
        .select(&select("title"))
        .next()
        .map(|t| {
            t.text()
                .collect::<String>()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|t| !t.is_empty());
    let declared = page
        .select(&select("link[rel=canonical][href]"))
        .next()
        .and_then(|l| base.join(l.value().attr("href")?).ok());
    let links = page
        .select(&select("a[href]"))
        .filter_map(|a| base.join(a.value().attr("href")?.trim()).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .collect();
    (title, declared, links)
}

/// The `<loc>` entries of a sitemap (or sitemap index), at most a few thousand.
pub fn sitemap_locs(xml: &str) -> Vec<String> {
    xml.split("<loc>")
        .skip(1)
        .filter_map(|rest| rest.split("</loc>").next())
        .map(|loc| loc.trim().replace("&amp;", "&"))
        .filter(|loc| !loc.is_empty())
        .take(MAX_SITEMAP_URLS)
        .collect()
}

/// The rules of a robots.txt that apply to Steward: the group naming
/// `steward`, else the `*` group. The longest matching rule decides; `Allow`
/// wins a tie.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Robots {
    /// (allow, path pattern with `*` and an optional final `$`)
    rules: Vec<(bool, String)>,
    pub delay_ms: Option<u64>,
    pub sitemaps: Vec<String>,
}

impl Robots {
    pub fn parse(text: &str) -> Self {
        #[derive(Default)]
        struct Group {
            agents: Vec<String>,
            rules: Vec<(bool, String)>,
            delay_ms: Option<u64>,
        }
        let mut groups: Vec<Group> = Vec::new();
        let mut sitemaps = Vec::new();
        let mut in_agents = false;
        for line in text.lines().take(10_000) {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((field, value)) = line.split_once(':') else {
                continue;
            };
            let (field, value) = (field.trim().to_ascii_lowercase(), value.trim());
            match field.as_str() {
                "user-agent" => {
                    if !in_agents {
                        groups.push(Group::default());
                    }
                    in_agents = true;
                    if let Some(group) = groups.last_mut() {
                        group.agents.push(value.to_ascii_lowercase());
                    }
                }
                "allow" | "disallow" => {
                    in_agents = false;
                    if let Some(group) = groups.last_mut()
                        && !value.is_empty()
                    {
                        group.rules.push((field == "allow", value.to_owned()));
                    }
                }
                "crawl-delay" => {
                    in_agents = false;
                    if let (Some(group), Ok(secs)) = (groups.last_mut(), value.parse::<f64>())
                        && secs.is_finite()
                        && secs >= 0.0
                    {
                        group.delay_ms = Some((secs * 1000.0).min(60_000.0) as u64);
                    }
                }
                "sitemap" => sitemaps.push(value.to_owned()),
                _ => in_agents = false,
            }
        }
        let ours = groups
            .iter()
            .position(|g| g.agents.iter().any(|a| a.contains("steward")))
            .or_else(|| {
                groups
                    .iter()
                    .position(|g| g.agents.iter().any(|a| a == "*"))
            });
        match ours.map(|i| groups.swap_remove(i)) {
            Some(group) => Self {
                rules: group.rules,
                delay_ms: group.delay_ms,
                sitemaps,
            },
            None => Self {
                sitemaps,
                ..Self::default()
            },
        }
    }

    pub fn allows(&self, path: &str) -> bool {
        let mut best: Option<(usize, bool)> = None;
        for (allow, pattern) in &self.rules {
            if matches_pattern(pattern, path) {
                let length = pattern.len();
                best = match best {
                    Some((l, a)) if l > length || (l == length && a) => Some((l, a)),
                    _ => Some((length, *allow)),
                };
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

/// A robots.txt path pattern: a prefix, with `*` for any run of characters
/// and a final `$` anchoring the end.
fn matches_pattern(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = path;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 && anchored {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    !anchored || rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robots_rules_pick_our_group_and_the_longest_match() {
        let robots = Robots::parse(
            "User-agent: Googlebot\nDisallow: /\n\nUser-agent: *\nDisallow: /private\nAllow: /private/open\nDisallow: /*.pdf$\nCrawl-delay: 2\n\nSitemap: https://x.org/s.xml\n",
        );
        assert!(robots.allows("/"));
        assert!(robots.allows("/docs/a"));
        assert!(!robots.allows("/private"));
        assert!(!robots.allows("/private/secret"));
        assert!(robots.allows("/private/open/page"));
        assert!(!robots.allows("/files/a.pdf"));
        assert!(robots.allows("/files/a.pdf.html"));
        assert_eq!(robots.delay_ms, Some(2000));
        assert_eq!(robots.sitemaps, vec!["https://x.org/s.xml"]);

        let ours = Robots::parse(
            "User-agent: *\nDisallow:\n\nUser-agent: Steward\nDisallow: /no-steward\n",
        );
        assert!(!ours.allows("/no-steward/x"), "our own group wins over *");
        assert!(Robots::parse("").allows("/anything"));
        assert!(Robots::parse("garbage\n\0\nUser-agent *").allows("/x"));
    }

    #[test]
    fn canonical_addresses_drop_fragments_and_tracking_and_order_the_query() {
        let url = |s: &str| canonical(&Url::parse(s).unwrap()).to_string();
        assert_eq!(
            url("https://Example.org:443/a?b=2&a=1&utm_source=x#top"),
            "https://example.org/a?a=1&b=2"
        );
        assert_eq!(
            url("http://example.org/a?utm_medium=y"),
            "http://example.org/a"
        );
    }

    #[test]
    fn links_titles_and_sitemaps_are_read() {
        let base = Url::parse("https://example.org/docs/").unwrap();
        let (title, declared, links) = page_links(
            r#"<html><head><title> Docs </title><link rel="canonical" href="/docs/index"></head>
               <body><a href="a">A</a><a href="/b#x">B</a><a href="mailto:x@y">m</a><a href="javascript:alert(1)">j</a>
               <a href="https://other.org/">o</a></body></html>"#,
            &base,
        );
        assert_eq!(title.as_deref(), Some("Docs"));
        assert_eq!(declared.unwrap().as_str(), "https://example.org/docs/index");
        let links: Vec<String> = links.iter().map(|u| u.to_string()).collect();
        assert_eq!(
            links,
            vec![
                "https://example.org/docs/a",
                "https://example.org/b#x",
                "https://other.org/"
            ]
        );
        let locs = sitemap_locs(
            "<urlset><url><loc> https://example.org/a?x=1&amp;y=2 </loc></url><url><loc>https://example.org/b</loc></url></urlset>",
        );
        assert_eq!(
            locs,
            vec!["https://example.org/a?x=1&y=2", "https://example.org/b"]
        );
    }

    #[test]
    fn same_site_means_same_host() {
        let root = Url::parse("https://example.org/").unwrap();
        assert!(same_site(
            &root,
            &Url::parse("http://example.org/x").unwrap()
        ));
        assert!(!same_site(
            &root,
            &Url::parse("https://sub.example.org/").unwrap()
        ));
        assert!(!same_site(
            &root,
            &Url::parse("https://example.org:8443/").unwrap()
        ));
    }
}
