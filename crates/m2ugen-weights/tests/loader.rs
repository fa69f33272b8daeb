//! The loader against a local HTTP server of the test's own, which can ignore ranges, cut
//! transfers short at chosen byte counts, and corrupt bodies. Loopback only; every loop is
//! bounded and the server stops when the test ends.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used)]

use m2ugen_core::rng::Rng;
use m2ugen_weights::loader::{load_manifest, load_tensors, Event, LoadOptions};
use m2ugen_weights::manifest::{FileEntry, Manifest, StoredType, TensorEntry, FORMAT};
use m2ugen_weights::native::{DirFetcher, HttpFetcher};
use m2ugen_weights::Error;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A model of `n` f32 tensors of awkward sizes in 3 shards, written to a fresh directory.
fn make_model(name: &str) -> (PathBuf, BTreeMap<String, Vec<u8>>) {
    let dir = std::env::temp_dir().join(format!("m2ugen-loader-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng::new(5);
    let mut tensors = Vec::new();
    let mut shards = Vec::new();
    let mut data = BTreeMap::new();
    for s in 0..3 {
        let mut shard = Vec::new();
        for i in 0..4 {
            let n = [1, 63, 1000, 4097][(s + i) % 4];
            let bytes: Vec<u8> = rng.vec(n, -1.0, 1.0).iter().flat_map(|v| v.to_le_bytes()).collect();
            let name = format!("layer{s}.w{i}");
            tensors.push(TensorEntry { name: name.clone(), shape: vec![n], dtype: StoredType::F32, shard: s, offset: shard.len() as u64, bytes: bytes.len() as u64, sha256: hex(&bytes) });
            shard.extend_from_slice(&bytes);
            data.insert(name, bytes);
        }
        let file = format!("shard-{s:05}.bin");
        std::fs::write(dir.join(&file), &shard).unwrap();
        shards.push(FileEntry { file, bytes: shard.len() as u64, sha256: hex(&shard) });
    }
    let manifest = Manifest { format: FORMAT.into(), model: "t".into(), version: "1".into(), components: BTreeMap::new(), tokenizer: None, shards, tensors };
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    (dir, data)
}

#[derive(Default)]
struct Faults {
    /// Answer 200 with the whole file, ignoring Range.
    no_ranges: bool,
    /// For the next responses to shard requests: send only this many body bytes, then close.
    cut_after: VecDeque<usize>,
    /// Corrupt the body of this many shard responses.
    corrupt: usize,
    /// Wait this long before answering.
    delay_ms: u64,
}

struct Server {
    base: String,
    log: Arc<Mutex<Vec<String>>>,
    max_active: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl Server {
    fn start(dir: &Path, faults: Faults) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (faults, log, stop) = (Arc::new(Mutex::new(faults)), Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (active, max_active) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (f, l, s, a, m, d) = (faults.clone(), log.clone(), stop.clone(), active, max_active.clone(), dir.to_path_buf());
        std::thread::spawn(move || {
            for conn in listener.incoming().take(10_000) {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (f, l, a, m, d) = (f.clone(), l.clone(), a.clone(), m.clone(), d.clone());
                std::thread::spawn(move || {
                    let now = a.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    let _ = serve(conn, &d, &f, &l);
                    a.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Server { base: format!("http://{addr}"), log, max_active, stop, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, dir: &Path, faults: &Mutex<Faults>, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let path = first.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            let (a, b) = v.trim().split_once('-').unwrap();
            range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
        }
    }
    log.lock().unwrap().push(format!("{path} {range:?}"));
    let (no_ranges, cut, corrupt, delay) = {
        let mut f = faults.lock().unwrap();
        let shard = path.starts_with("shard-");
        let cut = if shard { f.cut_after.pop_front() } else { None };
        let corrupt = shard && f.corrupt > 0;
        if corrupt {
            f.corrupt -= 1;
        }
        (f.no_ranges, cut, corrupt, f.delay_ms)
    };
    std::thread::sleep(Duration::from_millis(delay));
    let mut conn = conn;
    let Ok(file) = std::fs::read(dir.join(&path)) else {
        return conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found");
    };
    let (status, mut body, extra) = match range {
        Some((a, b)) if !no_ranges => ("206 Partial Content", file[a..=b].to_vec(), format!("Content-Range: bytes {a}-{b}/{}\r\n", file.len())),
        _ => ("200 OK", file, String::new()),
    };
    if corrupt && !body.is_empty() {
        body[0] ^= 0xff;
    }
    conn.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n", body.len()).as_bytes())?;
    let send = cut.map_or(body.len(), |c| c.min(body.len()));
    conn.write_all(&body[..send])?;
    conn.flush()
}

/// Loads everything through `server`, returning tensors by name and the events.
fn load_http(server: &Server, in_flight: usize) -> Result<(BTreeMap<String, Vec<u8>>, Vec<Event>), Error> {
    let fetcher = HttpFetcher::new(&server.base);
    load_with(&fetcher, in_flight)
}

fn load_with<F: m2ugen_weights::loader::Fetcher>(fetcher: &F, in_flight: usize) -> Result<(BTreeMap<String, Vec<u8>>, Vec<Event>), Error> {
    let start = Instant::now();
    let clock = move || start.elapsed().as_secs_f64() * 1e3;
    let options = LoadOptions { in_flight, max_resumes: 4, clock: &clock };
    pollster::block_on(async {
        let manifest = load_manifest(fetcher).await?;
        let mut got = BTreeMap::new();
        let mut events = Vec::new();
        load_tensors(fetcher, &manifest, None, &options, |e| events.push(e), |t, bytes| {
            got.insert(t.name.clone(), bytes);
            Ok(())
        })
        .await?;
        Ok((got, events))
    })
}

fn notices(events: &[Event]) -> Vec<String> {
    events.iter().filter_map(|e| if let Event::Notice(n) = e { Some(n.clone()) } else { None }).collect()
}

#[test]
fn loads_every_tensor_with_several_requests_in_flight_and_reports_progress() {
    let (dir, data) = make_model("clean");
    let server = Server::start(&dir, Faults { delay_ms: 40, ..Default::default() });
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
    let server = Server::start(&dir, Faults { cut_after: [0, 1, 100, 1000, 3, 2000].into(), ..Default::default() });
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
    let server = Server::start(&dir, Faults { cut_after: vec![0; 100].into(), ..Default::default() });
    let e = load_http(&server, 1).unwrap_err();
    assert!(matches!(e, Error::Interrupted { attempts: 5, .. }), "{e}");
    assert!(e.to_string().contains("shard-00000.bin: the download broke off at byte 0 5 times"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn falls_back_to_whole_shards_when_the_server_ignores_ranges() {
    let (dir, data) = make_model("no-ranges");
    let server = Server::start(&dir, Faults { no_ranges: true, ..Default::default() });
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
    let server = Server::start(&dir, Faults { corrupt: 1, ..Default::default() });
    let (got, events) = load_http(&server, 1).unwrap();
    assert_eq!(got, data);
    assert!(notices(&events).iter().any(|n| n.contains("hash mismatch, fetching it again")));
    drop(server);

    let server = Server::start(&dir, Faults { corrupt: 1000, ..Default::default() });
    let e = load_http(&server, 1).unwrap_err();
    assert!(matches!(&e, Error::HashMismatch { tensor, .. } if tensor == "layer0.w0"), "{e}");
    assert!(e.to_string().starts_with("tensor 'layer0.w0' in shard-00000.bin does not match its SHA-256"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_directory_loads_the_same_and_missing_files_are_named() {
    let (dir, data) = make_model("dir");
    let (got, _) = load_with(&DirFetcher(dir.clone()), 2).unwrap();
    assert_eq!(got, data);
    let server = Server::start(&dir.join("nowhere"), Faults::default());
    let e = load_http(&server, 1).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}/manifest.json: ", server.base)) && e.contains("404"), "{e}");
    let e = load_with(&DirFetcher(dir.join("nowhere")), 1).unwrap_err().to_string();
    assert!(e.contains("nowhere/manifest.json"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}
