//! The loader against the crate's own HTTP server (`native::server`, what `m2ugen serve` runs),
//! told to ignore ranges, cut transfers short at chosen byte counts, and corrupt bodies. Loopback
//! only; the server stops when the test ends.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used)]

use m2ugen_core::rng::Rng;
use futures_util::future::LocalBoxFuture;
use m2ugen_weights::loader::{load_all, Event, LoadOptions, TensorCache};
use m2ugen_weights::manifest::{FileEntry, Manifest, Piece, StoredType, TensorEntry, FORMAT};
use m2ugen_weights::native::server::{Faults, Server};
use m2ugen_weights::native::{DirFetcher, HttpFetcher};
use m2ugen_weights::Error;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A model of 12 f32 tensors of awkward sizes in 3 shards, written to a fresh directory. The
/// last tensor of each of the first two shards is cut: its second half opens the next shard.
fn make_model(name: &str) -> (PathBuf, BTreeMap<String, Vec<u8>>) {
    let dir = std::env::temp_dir().join(format!("m2ugen-loader-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng::new(5);
    let mut tensors: Vec<TensorEntry> = Vec::new();
    let mut shards = Vec::new();
    let mut data = BTreeMap::new();
    let mut carried: Option<Vec<u8>> = None;
    for s in 0..3 {
        let mut shard = Vec::new();
        if let Some(rest) = carried.take() {
            let cut = tensors.last_mut().unwrap();
            cut.continued = vec![Piece { shard: s, offset: 0, bytes: rest.len() as u64 }];
            shard.extend_from_slice(&rest);
        }
        for i in 0..4 {
            let n = [1, 63, 1000, 4097][(s + i) % 4];
            let bytes: Vec<u8> = rng.vec(n, -1.0, 1.0).iter().flat_map(|v| v.to_le_bytes()).collect();
            let name = format!("layer{s}.w{i}");
            tensors.push(TensorEntry { name: name.clone(), shape: vec![n], dtype: StoredType::F32, shard: s, offset: shard.len() as u64, bytes: bytes.len() as u64, sha256: hex(&bytes), continued: vec![] });
            let kept = if i == 3 && s < 2 { bytes.len() / 2 } else { bytes.len() };
            shard.extend_from_slice(&bytes[..kept]);
            if kept < bytes.len() {
                carried = Some(bytes[kept..].to_vec());
            }
            data.insert(name, bytes);
        }
        let file = format!("shard-{s:05}.bin");
        std::fs::write(dir.join(&file), &shard).unwrap();
        shards.push(FileEntry { file, bytes: shard.len() as u64, sha256: hex(&shard) });
    }
    let manifest = Manifest { format: FORMAT.into(), model: "t".into(), version: "1".into(), kind: m2ugen_core::config::ModelKind::Components, components: BTreeMap::new(), tokenizer: None, text_tokenizer: None, clap_tokenizer: None, shards, tensors };
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    (dir, data)
}

/// Loads everything through `server`, returning tensors by name and the events.
fn load_http(server: &Server, in_flight: usize) -> Result<(BTreeMap<String, Vec<u8>>, Vec<Event>), Error> {
    let fetcher = HttpFetcher::new(&server.base);
    load_with(&fetcher, in_flight)
}

fn load_with<F: m2ugen_weights::loader::Fetcher>(fetcher: &F, in_flight: usize) -> Result<(BTreeMap<String, Vec<u8>>, Vec<Event>), Error> {
    load_through(fetcher, in_flight, 4, None).map(|(got, events, _)| (got, events))
}

/// Loads every tensor through `fetcher` (and `cache`): tensors by name, the events, and whether
/// the manifest came from the cache.
fn load_through<F: m2ugen_weights::loader::Fetcher>(fetcher: &F, in_flight: usize, max_resumes: usize, cache: Option<&dyn TensorCache>) -> Result<(BTreeMap<String, Vec<u8>>, Vec<Event>, bool), Error> {
    let start = Instant::now();
    let clock = move || start.elapsed().as_secs_f64() * 1e3;
    let options = LoadOptions { in_flight, max_resumes, clock: &clock, cache };
    pollster::block_on(load_all(fetcher, &options))
}

fn notices(events: &[Event]) -> Vec<String> {
    events.iter().filter_map(|e| if let Event::Notice(n) = e { Some(n.clone()) } else { None }).collect()
}

#[test]
fn loads_every_tensor_with_several_requests_in_flight_and_reports_progress() {
    let (dir, data) = make_model("clean");
    let server = Server::start(&dir, Faults { delay_ms: 40, ..Default::default() }).unwrap();
    let (got, events) = load_http(&server, 4).unwrap();
    assert_eq!(got, data);
    assert!(server.max_active.load(Ordering::SeqCst) >= 2, "requests should overlap");
    let Some(Event::Progress(last)) = events.iter().rev().find(|e| matches!(e, Event::Progress(_))) else { panic!("no progress") };
    let total: u64 = data.values().map(|b| b.len() as u64).sum();
    assert_eq!((last.done, last.total), (total, total));
    assert!(last.rate() > 0.0 && last.eta_s() == Some(0.0));
    // One range request per tensor: no whole-shard downloads.
    assert!(server.log.lock().unwrap().iter().filter(|l| l.starts_with("shard-")).all(|l| l.contains("Some(")));
    assert!(notices(&events).is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn resumes_ranges_after_disconnects_at_several_offsets() {
    let (dir, data) = make_model("cuts");
    let server = Server::start(&dir, Faults { cut_after: [0, 1, 100, 1000, 3, 2000].into(), ..Default::default() }).unwrap();
    let (got, events) = load_http(&server, 2).unwrap();
    assert_eq!(got, data);
    assert!(notices(&events).iter().filter(|n| n.contains("resuming")).count() >= 4, "{:?}", notices(&events));
    // Resumed requests start inside a tensor, past its first byte.
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let starts: Vec<u64> = manifest.tensors.iter().map(|t| t.offset).collect();
    let log = server.log.lock().unwrap();
    let resumed = log.iter().filter(|l| l.starts_with("shard-")).filter_map(|l| l.split("Some((").nth(1)?.split(',').next()?.parse::<u64>().ok()).filter(|s| !starts.contains(s)).count();
    assert!(resumed >= 3, "{log:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_connection_that_keeps_breaking_is_named() {
    let (dir, _) = make_model("always-cut");
    let server = Server::start(&dir, Faults { cut_after: vec![0; 100].into(), ..Default::default() }).unwrap();
    let e = load_http(&server, 1).unwrap_err();
    assert!(matches!(e, Error::Interrupted { attempts: 5, .. }), "{e}");
    assert!(e.to_string().contains("shard-00000.bin: the download broke off at byte 0 5 times"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn falls_back_to_whole_shards_when_the_server_ignores_ranges() {
    let (dir, data) = make_model("no-ranges");
    let server = Server::start(&dir, Faults { no_ranges: true, ..Default::default() }).unwrap();
    let (got, events) = load_http(&server, 3).unwrap();
    assert_eq!(got, data);
    let n = notices(&events);
    assert_eq!(n.iter().filter(|n| n.contains("ignores range requests")).count(), 1, "said once: {n:?}");
    // Each shard is downloaded whole a bounded number of times, not once per tensor.
    let log = server.log.lock().unwrap();
    for s in 0..3 {
        let count = log.iter().filter(|l| l.starts_with(&format!("shard-{s:05}.bin"))).count();
        assert!(count <= 4, "shard {s} fetched {count} times: {log:?}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_corrupt_tensor_is_fetched_again_then_named() {
    let (dir, data) = make_model("corrupt");
    let server = Server::start(&dir, Faults { corrupt: 1, ..Default::default() }).unwrap();
    let (got, events) = load_http(&server, 1).unwrap();
    assert_eq!(got, data);
    assert!(notices(&events).iter().any(|n| n.contains("hash mismatch, fetching it again")));
    drop(server);

    let server = Server::start(&dir, Faults { corrupt: 1000, ..Default::default() }).unwrap();
    let e = load_http(&server, 1).unwrap_err();
    assert!(matches!(&e, Error::HashMismatch { tensor, .. } if tensor == "layer0.w0"), "{e}");
    assert!(e.to_string().starts_with("tensor 'layer0.w0' in shard-00000.bin does not match its SHA-256"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_tensor_cut_over_two_shards_loads_whole_and_a_bad_piece_names_both_files() {
    let (dir, data) = make_model("pieces");
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let cut = manifest.tensor("layer0.w3").unwrap();
    assert_eq!(cut.pieces().len(), 2, "make_model cuts layer0.w3 over shards 0 and 1");
    let (got, _) = load_with(&DirFetcher(dir.clone()), 2).unwrap();
    assert_eq!(got, data);
    // Damage the piece that opens shard 1: the tensor is fetched again, then named.
    let path = dir.join("shard-00001.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let e = load_with(&DirFetcher(dir.clone()), 1).unwrap_err();
    assert!(e.to_string().starts_with("tensor 'layer0.w3' in shard-00000.bin and shard-00001.bin does not match its SHA-256"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_directory_loads_the_same_and_missing_files_are_named() {
    let (dir, data) = make_model("dir");
    let (got, _) = load_with(&DirFetcher(dir.clone()), 2).unwrap();
    assert_eq!(got, data);
    let server = Server::start(&dir.join("nowhere"), Faults::default()).unwrap();
    let e = load_http(&server, 1).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}/manifest.json: ", server.base)) && e.contains("404"), "{e}");
    let e = load_with(&DirFetcher(dir.join("nowhere")), 1).unwrap_err().to_string();
    assert!(e.contains("nowhere/manifest.json"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A cache in memory, with the Cache API's behaviours the loader must handle: a quota, and
/// entries that can be damaged.
#[derive(Default)]
struct MemoryCache {
    entries: std::sync::Mutex<BTreeMap<String, Vec<u8>>>,
    /// Bytes it may hold in all.
    quota: Option<usize>,
    puts: std::sync::atomic::AtomicUsize,
}

impl TensorCache for MemoryCache {
    fn get<'a>(&'a self, key: &'a str) -> LocalBoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move { self.entries.lock().unwrap().get(key).cloned() })
    }

    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.puts.fetch_add(1, Ordering::SeqCst);
            let mut entries = self.entries.lock().unwrap();
            let held: usize = entries.values().map(Vec::len).sum();
            if self.quota.is_some_and(|q| held + bytes.len() > q) {
                return Err(Error::QuotaFull { detail: "the quota has been exceeded".into() });
            }
            entries.insert(key.to_string(), bytes.to_vec());
            Ok(())
        })
    }
}

fn load_cached<F: m2ugen_weights::loader::Fetcher>(fetcher: &F, cache: &MemoryCache) -> Result<(BTreeMap<String, Vec<u8>>, Vec<Event>, bool), Error> {
    load_through(fetcher, 3, 2, Some(cache))
}

fn last_progress(events: &[Event]) -> m2ugen_weights::loader::Progress {
    events.iter().rev().find_map(|e| if let Event::Progress(p) = e { Some(*p) } else { None }).unwrap()
}

#[test]
fn a_second_load_comes_from_the_cache_with_no_network() {
    let (dir, data) = make_model("cache");
    let cache = MemoryCache::default();
    let server = Server::start(&dir, Faults::default()).unwrap();
    let fetcher = HttpFetcher::new(&server.base);
    let (got, events, offline) = load_cached(&fetcher, &cache).unwrap();
    assert_eq!((got, offline, last_progress(&events).cached), (data.clone(), false, 0));
    // 12 tensors and the manifest.
    assert_eq!(cache.entries.lock().unwrap().len(), 13);
    drop(server);

    // The server is gone: the manifest and every tensor come from the cache.
    let (got, events, offline) = load_cached(&fetcher, &cache).unwrap();
    let p = last_progress(&events);
    assert_eq!((got, offline, p.cached, p.done), (data.clone(), true, p.total, p.total));
    assert_eq!(p.rate(), 0.0, "cache hits are not a download rate");

    // A damaged entry is noticed and fetched again.
    let server = Server::start(&dir, Faults::default()).unwrap();
    let fetcher = HttpFetcher::new(&server.base);
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let key = m2ugen_weights::loader::tensor_key(&manifest.tensors[5]);
    cache.entries.lock().unwrap().get_mut(&key).unwrap()[0] ^= 1;
    let (got, events, _) = load_cached(&fetcher, &cache).unwrap();
    assert_eq!(got, data);
    assert_eq!(notices(&events), vec![format!("{}: the cached copy is damaged; downloading it again", manifest.tensors[5].name)]);
    assert_eq!(server.log.lock().unwrap().iter().filter(|l| l.starts_with("shard-")).count(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_full_cache_is_said_once_and_the_load_goes_on() {
    let (dir, data) = make_model("quota");
    let cache = MemoryCache { quota: Some(20_000), ..Default::default() };
    let server = Server::start(&dir, Faults::default()).unwrap();
    let (got, events, _) = load_cached(&HttpFetcher::new(&server.base), &cache).unwrap();
    assert_eq!(got, data);
    let n = notices(&events);
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].starts_with("browser storage is full (the quota has been exceeded): the model still loads"), "{n:?}");
    // Caching stops after the first refusal instead of failing once per tensor.
    let puts = cache.puts.load(Ordering::SeqCst);
    assert!(puts < 12, "{puts} writes tried");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn path_prefix_faults_reach_clients_that_cannot_configure_the_server() {
    let (dir, data) = make_model("by-path");
    let server = Server::start(&dir, Faults { by_path: true, ..Default::default() }).unwrap();
    for (prefix, said) in [("cut", "resuming"), ("no-ranges", "ignores range requests"), ("corrupt", "hash mismatch, fetching it again")] {
        let (got, events) = load_with(&HttpFetcher::new(&format!("{}/{prefix}", server.base)), 2).unwrap();
        assert_eq!(got, data, "{prefix}");
        assert!(notices(&events).iter().any(|n| n.contains(said)), "{prefix}: {:?}", notices(&events));
    }
    // Without `by_path` the prefixes are just missing directories.
    let plain = Server::start(&dir, Faults::default()).unwrap();
    assert!(load_with(&HttpFetcher::new(&format!("{}/cut", plain.base)), 1).unwrap_err().to_string().contains("404"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// One raw HTTP exchange: the head of the answer and its body.
fn exchange(server: &Server, request: &str) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    conn.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase(), answer[split + 4..].to_vec())
}

#[test]
fn the_server_answers_pages_on_other_origins_as_a_cdn_must() {
    let (dir, _) = make_model("cors");
    let server = Server::start(&dir, Faults::default()).unwrap();
    let (head, _) = exchange(&server, "OPTIONS /shard-00000.bin HTTP/1.1\r\nOrigin: http://page.test\r\nAccess-Control-Request-Headers: range\r\n\r\n");
    assert!(head.starts_with("http/1.1 204"), "{head}");
    for want in ["access-control-allow-origin: *", "access-control-allow-headers: range", "access-control-expose-headers: content-range, content-length, accept-ranges"] {
        assert!(head.contains(want), "preflight lacks {want}: {head}");
    }
    let shard = std::fs::read(dir.join("shard-00000.bin")).unwrap();
    let (head, body) = exchange(&server, "GET /shard-00000.bin HTTP/1.1\r\nRange: bytes=10-19\r\n\r\n");
    assert!(head.starts_with("http/1.1 206") && head.contains(&format!("content-range: bytes 10-19/{}", shard.len())) && head.contains("access-control-allow-origin: *"), "{head}");
    assert_eq!(body, &shard[10..20]);
    let (head, _) = exchange(&server, &format!("GET /shard-00000.bin HTTP/1.1\r\nRange: bytes={}-\r\n\r\n", shard.len()));
    assert!(head.starts_with("http/1.1 416"), "{head}");
    let (head, _) = exchange(&server, "GET /../loader.rs HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("http/1.1 404"), "{head}");
    std::fs::remove_dir_all(dir).unwrap();
}
