//! A static file server for a converted model, answering as a CDN must: `Range` requests
//! (`206 Partial Content`), CORS for pages on other origins (the `Range` header allowed,
//! `Content-Range` exposed), `HEAD` and preflight `OPTIONS`. `m2ugen serve` runs it to try the
//! page on a local conversion; the loader tests run it and ask it to misbehave ([`Faults`]).
//!
//! Only files directly named under the served directory are served: a path with `..`, a
//! backslash, a leading `/` after the prefix or any byte outside `[A-Za-z0-9._/-]` gets 404.

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Misbehaviour on request, for tests. The default is a well-behaved server.
#[derive(Default, Debug)]
pub struct Faults {
    /// Answer `200` with the whole file, ignoring `Range`.
    pub no_ranges: bool,
    /// For the next responses to shard requests (`shard-*`): send only this many body bytes,
    /// then close.
    pub cut_after: VecDeque<usize>,
    /// Flip the first byte of this many shard responses.
    pub corrupt: usize,
    /// Wait this long before answering.
    pub delay_ms: u64,
    /// Faults chosen by path prefix, for clients that cannot reach this struct (the browser
    /// suite): `/no-ranges/F` ignores `Range`; `/cut/F` sends half of the first response for
    /// each file `F`, then closes; `/corrupt/F` flips a byte of the first response for each file.
    pub by_path: bool,
}

/// A running server; it stops when dropped.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// One line per request: `PATH Some((first, last))` or `PATH None`.
    pub log: Arc<Mutex<Vec<String>>>,
    /// The most requests that were being answered at once.
    pub max_active: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
}

struct Shared {
    dir: PathBuf,
    faults: Mutex<Faults>,
    /// Files whose first response a path-prefix fault has already spoiled.
    spoiled: Mutex<HashSet<String>>,
    log: Arc<Mutex<Vec<String>>>,
    active: AtomicUsize,
    max_active: Arc<AtomicUsize>,
}

impl Server {
    /// Serves `dir` on a free loopback port.
    pub fn start(dir: &Path, faults: Faults) -> std::io::Result<Server> {
        Server::bind("127.0.0.1:0", dir, faults)
    }

    /// Serves `dir` at `addr` (e.g. `127.0.0.1:8081`).
    pub fn bind(addr: &str, dir: &Path, faults: Faults) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let max_active = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared { dir: dir.to_path_buf(), faults: Mutex::new(faults), spoiled: Mutex::new(HashSet::new()), log: log.clone(), active: AtomicUsize::new(0), max_active: max_active.clone() });
        let halt = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let now = shared.active.fetch_add(1, Ordering::SeqCst) + 1;
                    shared.max_active.fetch_max(now, Ordering::SeqCst);
                    let _ = answer(conn, &shared);
                    shared.active.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(Server { base: format!("http://{addr}"), log, max_active, stop, addr })
    }

    /// Serves until the process ends.
    pub fn wait(self) {
        loop {
            std::thread::park();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// A request's target path, if it is one this server serves.
fn safe_path(target: &str) -> Option<String> {
    let path = target.split(['?', '#']).next()?.strip_prefix('/')?;
    let ok = !path.is_empty() && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b)) && !path.split('/').any(|p| p.is_empty() || p == "." || p == "..");
    ok.then(|| path.to_string())
}

/// `bytes=A-B` or `bytes=A-` against a file of `len` bytes: the inclusive range, `Err` if
/// unsatisfiable, `None` if there is no usable header.
fn parse_range(value: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b: u64 = if b.trim().is_empty() { len.saturating_sub(1) } else { b.trim().parse().ok()? };
    Some(if a <= b && a < len { Ok((a, b.min(len - 1))) } else { Err(()) })
}

const CORS: &str = "Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: GET, HEAD, OPTIONS\r\nAccess-Control-Allow-Headers: Range\r\nAccess-Control-Expose-Headers: Content-Range, Content-Length, Accept-Ranges\r\n";

fn answer(conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?.take(64 << 10));
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut words = first.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
    let mut range_header = None;
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range_header = Some(value.trim().to_string());
            }
        }
    }
    let mut conn = conn;
    let reply = |conn: &mut TcpStream, status: &str, extra: &str, body: &[u8]| -> std::io::Result<()> {
        conn.write_all(format!("HTTP/1.1 {status}\r\n{CORS}Content-Length: {}\r\n{extra}Connection: close\r\n\r\n", body.len()).as_bytes())?;
        conn.write_all(body)
    };
    if method == "OPTIONS" {
        return reply(&mut conn, "204 No Content", "Access-Control-Max-Age: 600\r\n", b"");
    }
    if method != "GET" && method != "HEAD" {
        return reply(&mut conn, "405 Method Not Allowed", "Allow: GET, HEAD, OPTIONS\r\n", b"");
    }
    let Some(mut path) = safe_path(target) else {
        return reply(&mut conn, "404 Not Found", "", b"not found");
    };
    // Path-prefix faults (browser tests): the prefix is stripped; cut and corrupt spoil only the
    // first response for each shard.
    let (mut prefix_no_ranges, mut prefix_cut, mut prefix_corrupt) = (false, false, false);
    if shared.faults.lock().map(|f| f.by_path).unwrap_or(false) {
        if let Some((prefix, rest)) = path.split_once('/').filter(|(p, _)| ["no-ranges", "cut", "corrupt"].contains(p)) {
            let first_time = rest.starts_with("shard-") && shared.spoiled.lock().map(|mut s| s.insert(path.clone())).unwrap_or(false);
            match prefix {
                "no-ranges" => prefix_no_ranges = true,
                "cut" => prefix_cut = first_time,
                _ => prefix_corrupt = first_time,
            }
            path = rest.to_string();
        }
    }
    let file_path = shared.dir.join(&path);
    let Ok(mut file) = std::fs::File::open(&file_path) else {
        return reply(&mut conn, "404 Not Found", "", b"not found");
    };
    let len = file.metadata()?.len();
    let (no_ranges, cut, corrupt, delay) = {
        let mut f = shared.faults.lock().map_err(|_| std::io::Error::other("poisoned"))?;
        let shard = path.starts_with("shard-");
        let cut = if shard { f.cut_after.pop_front() } else { None };
        let corrupt = shard && f.corrupt > 0;
        if corrupt {
            f.corrupt -= 1;
        }
        (f.no_ranges || prefix_no_ranges, cut, corrupt || prefix_corrupt, f.delay_ms)
    };
    let range = if no_ranges { None } else { range_header.as_deref().and_then(|v| parse_range(v, len)) };
    if let Ok(mut log) = shared.log.lock() {
        log.push(format!("{path} {:?}", range.and_then(|r| r.ok())));
    }
    std::thread::sleep(Duration::from_millis(delay));
    let kind = if path.ends_with(".json") { "application/json" } else { "application/octet-stream" };
    let accept = if no_ranges { "" } else { "Accept-Ranges: bytes\r\n" };
    let (status, first_byte, count, extra) = match range {
        Some(Err(())) => return reply(&mut conn, "416 Range Not Satisfiable", &format!("Content-Range: bytes */{len}\r\n"), b""),
        Some(Ok((a, b))) => ("206 Partial Content", a, b - a + 1, format!("Content-Range: bytes {a}-{b}/{len}\r\n")),
        None => ("200 OK", 0, len, String::new()),
    };
    conn.write_all(format!("HTTP/1.1 {status}\r\n{CORS}Content-Type: {kind}\r\nCache-Control: no-store\r\n{accept}Content-Length: {count}\r\n{extra}Connection: close\r\n\r\n").as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }
    file.seek(SeekFrom::Start(first_byte))?;
    let send = match (cut, prefix_cut) {
        (Some(c), _) => (c as u64).min(count),
        (None, true) => count / 2,
        (None, false) => count,
    };
    let mut body = Vec::with_capacity(send as usize);
    file.take(send).read_to_end(&mut body)?;
    if corrupt && !body.is_empty() {
        body[0] ^= 0xff;
    }
    conn.write_all(&body)?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_directory_are_refused() {
        assert_eq!(safe_path("/shard-00000.bin"), Some("shard-00000.bin".into()));
        assert_eq!(safe_path("/cut/manifest.json?x=1"), Some("cut/manifest.json".into()));
        for bad in ["/../etc/passwd", "/a/../../b", "//etc/passwd", "/", "/a\\b", "/%2e%2e/x", "/a//b", "/./a"] {
            assert_eq!(safe_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges_are_read_as_http_says() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=90-200", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=100-200", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=9-2", 100), Some(Err(())));
        assert_eq!(parse_range("items=0-9", 100), None);
        assert_eq!(parse_range("bytes=x-9", 100), None);
    }
}
