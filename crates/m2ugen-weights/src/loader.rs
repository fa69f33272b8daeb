//! Streams a model's tensors: manifest first, then each tensor by an HTTP range request (or a
//! file read), several in flight, each checked against its SHA-256 before it is handed on.
//!
//! What it survives, and what it says:
//! - a dropped connection: the range is resumed from the last byte received (up to
//!   [`LoadOptions::max_resumes`] times per tensor), then an error naming the file and offset;
//! - a server that ignores `Range`: whole shards are downloaded instead (each once) and a
//!   [`Event::Notice`] says so;
//! - a hash mismatch: the tensor is fetched once more, then an error naming the tensor.
//!
//! Progress ([`Event::Progress`]) carries bytes done and total, from which the rate and the time
//! left follow. Written once for both targets: a [`Fetcher`] supplies the bytes (a directory or
//! HTTP natively, `fetch` in the browser), and an optional [`TensorCache`] keeps verified tensors
//! between visits (the browser's Cache API): a tensor found there, with the right hash, costs no
//! request; a cache that is full is said once and the load goes on from the network.

use crate::manifest::{Manifest, TensorEntry};
use crate::{Error, Result};
use futures_util::future::LocalBoxFuture;
use futures_util::stream::{self, StreamExt};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Range;
use std::sync::Mutex;

/// What a fetch returned.
#[derive(Debug)]
pub enum Reply {
    /// The requested range (HTTP 206, or a file read), possibly cut short.
    Range(Vec<u8>),
    /// The whole file: the server ignored the range (HTTP 200), possibly cut short.
    Whole(Vec<u8>),
}

/// A source of files: a base URL or directory.
pub trait Fetcher {
    /// Bytes `range` of `file` (the whole file for `None`). A transfer that breaks off returns
    /// what arrived; an answer that is no answer (404, refused) is an error naming the file.
    fn fetch(&self, file: &str, range: Option<Range<u64>>) -> impl Future<Output = Result<Reply>>;

    /// Where the files come from, for messages.
    fn origin(&self) -> String;
}

/// A store of verified bytes that outlives the page (the browser's Cache API). Keys are
/// [`tensor_key`]s (content hashes) and [`manifest_key`]s; what comes out is checked again.
pub trait TensorCache {
    /// The bytes stored under `key`, if any.
    fn get<'a>(&'a self, key: &'a str) -> LocalBoxFuture<'a, Option<Vec<u8>>>;
    /// Stores `bytes` under `key`; [`Error::QuotaFull`] when there is no room.
    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> LocalBoxFuture<'a, Result<()>>;
}

/// The cache key of a tensor: its content hash, so two models sharing a tensor share the entry
/// and a changed tensor never meets a stale one.
pub fn tensor_key(t: &TensorEntry) -> String {
    content_key(&t.sha256)
}

/// The cache key of bytes with SHA-256 `sha256` (tensors and the tokenizer alike).
fn content_key(sha256: &str) -> String {
    format!("sha256-{sha256}")
}

/// The cache key of the manifest served at `origin`.
pub fn manifest_key(origin: &str) -> String {
    let hash = sha256_hex(origin.as_bytes());
    format!("manifest-{}", &hash[..32])
}

/// Loader settings.
pub struct LoadOptions<'a> {
    /// Requests in flight at once.
    pub in_flight: usize,
    /// Resumptions of one tensor's range before giving up.
    pub max_resumes: usize,
    /// Milliseconds from a monotonic clock (for the rate and time left).
    pub clock: &'a dyn Fn() -> f64,
    /// Where verified tensors are looked up first and kept afterwards.
    pub cache: Option<&'a dyn TensorCache>,
}

/// Bytes done so far.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Verified bytes.
    pub done: u64,
    /// Of `done`, the bytes that came from the cache.
    pub cached: u64,
    /// Bytes to load in all.
    pub total: u64,
    /// Milliseconds since loading began.
    pub elapsed_ms: f64,
}

impl Progress {
    /// Bytes per second so far, from the network (cache hits are not a rate).
    pub fn rate(&self) -> f64 {
        if self.elapsed_ms > 0.0 { (self.done - self.cached) as f64 / (self.elapsed_ms / 1e3) } else { 0.0 }
    }

    /// Seconds left at the rate so far, if there is a rate.
    pub fn eta_s(&self) -> Option<f64> {
        let rate = self.rate();
        (rate > 0.0).then(|| (self.total - self.done) as f64 / rate)
    }
}

/// What the loader reports while it works.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A tensor was verified.
    Progress(Progress),
    /// Something the user should know (a fallback, a retry).
    Notice(String),
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Fetches and parses the manifest.
pub async fn load_manifest<F: Fetcher>(fetcher: &F) -> Result<Manifest> {
    Ok(load_manifest_cached(fetcher, None).await?.0)
}

/// Fetches and parses the manifest, keeping a copy in `cache`; when the fetch fails and the
/// cache has a copy, that copy (and `true`: offline).
pub async fn load_manifest_cached<F: Fetcher>(fetcher: &F, cache: Option<&dyn TensorCache>) -> Result<(Manifest, bool)> {
    let (manifest, _, offline) = load_manifest_with_hash(fetcher, cache).await?;
    Ok((manifest, offline))
}

/// As [`load_manifest_cached`], with the SHA-256 of the manifest's bytes (what a share link
/// names the model's exact weights by).
pub async fn load_manifest_with_hash<F: Fetcher>(fetcher: &F, cache: Option<&dyn TensorCache>) -> Result<(Manifest, [u8; 32], bool)> {
    let key = manifest_key(&fetcher.origin());
    let hashed = |bytes: &[u8], offline| -> Result<(Manifest, [u8; 32], bool)> { Ok((Manifest::parse(bytes)?, Sha256::digest(bytes).into(), offline)) };
    match fetcher.fetch("manifest.json", None).await {
        Ok(Reply::Range(bytes) | Reply::Whole(bytes)) => {
            let parsed = hashed(&bytes, false)?;
            if let Some(cache) = cache {
                // A full cache is reported by the tensors that follow.
                let _ = cache.put(&key, &bytes).await;
            }
            Ok(parsed)
        }
        Err(e) => match cache {
            Some(cache) => match cache.get(&key).await {
                Some(bytes) => hashed(&bytes, true),
                None => Err(e),
            },
            None => Err(e),
        },
    }
}

/// A file the manifest lists beside the shards (the tokenizer), checked against its SHA-256
/// (fetched once more on a mismatch), from `cache` when it holds it, and kept there.
pub async fn load_file<F: Fetcher>(fetcher: &F, entry: &crate::FileEntry, cache: Option<&dyn TensorCache>) -> Result<Vec<u8>> {
    let key = content_key(&entry.sha256);
    if let Some(bytes) = match cache {
        Some(c) => c.get(&key).await,
        None => None,
    } {
        if sha256_hex(&bytes) == entry.sha256 {
            return Ok(bytes);
        }
    }
    for _ in 0..2 {
        let (Reply::Range(bytes) | Reply::Whole(bytes)) = fetcher.fetch(&entry.file, None).await?;
        if bytes.len() as u64 == entry.bytes && sha256_hex(&bytes) == entry.sha256 {
            if let Some(c) = cache {
                // A full cache is not this file's problem: it loads from the network next time.
                let _ = c.put(&key, &bytes).await;
            }
            return Ok(bytes);
        }
    }
    Err(Error::FileHashMismatch { file: entry.file.clone() })
}

struct State<'a, F> {
    fetcher: &'a F,
    manifest: &'a Manifest,
    options: &'a LoadOptions<'a>,
    /// Set once the server is seen ignoring ranges; then whole shards, each kept once.
    no_ranges: Mutex<bool>,
    shards: Mutex<HashMap<usize, Vec<u8>>>,
    notices: Mutex<Vec<String>>,
    /// Set once a cache write has failed (said once; no more writes are tried).
    cache_failed: Mutex<bool>,
}

impl<F: Fetcher> State<'_, F> {
    fn notice(&self, text: String) {
        if let Ok(mut n) = self.notices.lock() {
            n.push(text);
        }
    }

    fn ranges_ignored(&self) -> bool {
        self.no_ranges.lock().map(|v| *v).unwrap_or(false)
    }

    /// The bytes of `range` in shard `shard`, resuming after breaks.
    async fn fetch_range(&self, shard: usize, range: Range<u64>) -> Result<Vec<u8>> {
        let file = &self.manifest.shards[shard].file;
        let len = (range.end - range.start) as usize;
        let mut got: Vec<u8> = Vec::with_capacity(len);
        let mut resumes = 0;
        loop {
            if self.ranges_ignored() {
                let shard = self.whole_shard(shard, file).await?;
                return Ok(shard[range.start as usize..range.end as usize].to_vec());
            }
            let from = range.start + got.len() as u64;
            match self.fetcher.fetch(file, Some(from..range.end)).await? {
                Reply::Range(bytes) => {
                    let want = len - got.len();
                    got.extend_from_slice(&bytes[..bytes.len().min(want)]);
                    if got.len() == len {
                        return Ok(got);
                    }
                }
                Reply::Whole(bytes) => {
                    if let Ok(mut v) = self.no_ranges.lock() {
                        if !*v {
                            *v = true;
                            drop(v);
                            self.notice(format!("{} ignores range requests: downloading whole shards instead", self.fetcher.origin()));
                        }
                    }
                    let (a, b) = (range.start as usize, range.end as usize);
                    if bytes.len() >= b {
                        let slice = bytes[a..b].to_vec();
                        // The whole shard came: keep it for its other tensors.
                        if bytes.len() as u64 == self.manifest.shards[shard].bytes {
                            if let Ok(mut s) = self.shards.lock() {
                                s.insert(shard, bytes);
                            }
                        }
                        return Ok(slice);
                    }
                }
            }
            resumes += 1;
            if resumes > self.options.max_resumes {
                return Err(Error::Interrupted { file: file.to_string(), offset: range.start + got.len() as u64, attempts: resumes });
            }
            self.notice(format!("{file}: the connection broke at byte {}; resuming", range.start + got.len() as u64));
        }
    }

    /// A whole shard, downloaded once (the fallback for servers without ranges).
    async fn whole_shard(&self, shard: usize, file: &str) -> Result<Vec<u8>> {
        if let Some(bytes) = self.shards.lock().ok().and_then(|s| s.get(&shard).cloned()) {
            return Ok(bytes);
        }
        let expected = self.manifest.shards[shard].bytes as usize;
        for attempt in 0..=self.options.max_resumes {
            let (Reply::Range(bytes) | Reply::Whole(bytes)) = self.fetcher.fetch(file, None).await?;
            if bytes.len() == expected {
                if let Ok(mut s) = self.shards.lock() {
                    s.insert(shard, bytes.clone());
                }
                return Ok(bytes);
            }
            self.notice(format!("{file}: the download broke at byte {} of {expected} (attempt {})", bytes.len(), attempt + 1));
        }
        Err(Error::Interrupted { file: file.to_string(), offset: 0, attempts: self.options.max_resumes + 1 })
    }

    /// One tensor, verified, and whether it came from the cache; fetched a second time if its
    /// hash does not match.
    async fn tensor(&self, t: &TensorEntry) -> Result<(Vec<u8>, bool)> {
        let key = tensor_key(t);
        if let Some(cache) = self.options.cache {
            if let Some(bytes) = cache.get(&key).await {
                if bytes.len() as u64 == t.bytes && sha256_hex(&bytes) == t.sha256 {
                    return Ok((bytes, true));
                }
                self.notice(format!("{}: the cached copy is damaged; downloading it again", t.name));
            }
        }
        let pieces = t.pieces();
        for attempt in 0..2 {
            let mut bytes = Vec::with_capacity(t.bytes as usize);
            for (shard, range) in &pieces {
                bytes.extend(self.fetch_range(*shard, range.clone()).await?);
            }
            if sha256_hex(&bytes) == t.sha256 {
                self.keep(&key, &bytes).await;
                return Ok((bytes, false));
            }
            if attempt == 0 {
                self.notice(format!("{}: hash mismatch, fetching it again", t.name));
                // A whole shard kept for the fallback may be the corrupt copy.
                if let Ok(mut s) = self.shards.lock() {
                    for (shard, _) in &pieces {
                        s.remove(shard);
                    }
                }
            }
        }
        let files: Vec<&str> = pieces.iter().map(|(shard, _)| self.manifest.shards[*shard].file.as_str()).collect();
        Err(Error::HashMismatch { tensor: t.name.clone(), file: files.join(" and ") })
    }

    /// Puts a verified tensor in the cache; the first failure is said, and ends caching.
    async fn keep(&self, key: &str, bytes: &[u8]) {
        let Some(cache) = self.options.cache else { return };
        if self.cache_failed.lock().map(|f| *f).unwrap_or(true) {
            return;
        }
        if let Err(e) = cache.put(key, bytes).await {
            if let Ok(mut failed) = self.cache_failed.lock() {
                if !*failed {
                    *failed = true;
                    drop(failed);
                    self.notice(e.to_string());
                }
            }
        }
    }
}

/// Loads `tensors` (all of the manifest's when `None`) and hands each verified tensor, in
/// manifest order, to `on_tensor`; reports progress and notices to `on_event`.
pub async fn load_tensors<F: Fetcher>(
    fetcher: &F,
    manifest: &Manifest,
    tensors: Option<&[&str]>,
    options: &LoadOptions<'_>,
    mut on_event: impl FnMut(Event),
    mut on_tensor: impl FnMut(&TensorEntry, Vec<u8>) -> Result<()>,
) -> Result<()> {
    let wanted: Vec<&TensorEntry> = match tensors {
        None => manifest.tensors.iter().collect(),
        Some(names) => names.iter().map(|n| manifest.tensor(n)).collect::<Result<_>>()?,
    };
    let total: u64 = wanted.iter().map(|t| t.bytes).sum();
    let state = State { fetcher, manifest, options, no_ranges: Mutex::new(false), shards: Mutex::new(HashMap::new()), notices: Mutex::new(Vec::new()), cache_failed: Mutex::new(false) };
    let start = (options.clock)();
    let (mut done, mut cached) = (0u64, 0u64);
    let state = &state;
    let mut results = stream::iter(wanted).map(|t| async move { (t, state.tensor(t).await) }).buffered(options.in_flight.max(1));
    while let Some((t, bytes)) = results.next().await {
        for n in state.notices.lock().map(|mut n| std::mem::take(&mut *n)).unwrap_or_default() {
            on_event(Event::Notice(n));
        }
        let (bytes, from_cache) = bytes?;
        on_tensor(t, bytes)?;
        done += t.bytes;
        if from_cache {
            cached += t.bytes;
        }
        on_event(Event::Progress(Progress { done, cached, total, elapsed_ms: (options.clock)() - start }));
    }
    Ok(())
}

/// Every tensor of the model at `fetcher` in memory, by name, with the events of the load and
/// whether the manifest came from `options.cache` (offline): for tools and tests on small models.
pub async fn load_all<F: Fetcher>(fetcher: &F, options: &LoadOptions<'_>) -> Result<(BTreeMap<String, Vec<u8>>, Vec<Event>, bool)> {
    let (manifest, offline) = load_manifest_cached(fetcher, options.cache).await?;
    let mut tensors = BTreeMap::new();
    let mut events = Vec::new();
    load_tensors(fetcher, &manifest, None, options, |e| events.push(e), |t, bytes| {
        tensors.insert(t.name.clone(), bytes);
        Ok(())
    })
    .await?;
    Ok((tensors, events, offline))
}
