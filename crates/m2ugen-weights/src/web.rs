//! The browser side of loading: files by `fetch` with `Range` ([`WebFetcher`]), verified
//! tensors kept in the Cache API between visits ([`WebCache`]), and the origin's storage: what
//! the cache holds and what the browser allows ([`storage_report`]), persistence
//! ([`request_persistence`]), clearing ([`clear_cache`]). Works on a page and in a worker.

use crate::loader::{Fetcher, Reply, TensorCache};
use crate::{Error, Result};
use futures_util::future::LocalBoxFuture;
use js_sys::{Reflect, Uint8Array};
use std::ops::Range;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// The Cache API cache that holds verified tensors and manifests.
pub const CACHE_NAME: &str = "m2ugen-weights-v1";
/// Where entries live in the cache (URLs on the page's own origin that are never fetched).
const KEY_PREFIX: &str = "/m2ugen-weights-cache/";
/// The header that records an entry's size, so the cache can be measured without reading it.
const SIZE_HEADER: &str = "x-m2ugen-bytes";

/// The global scope: a page or a worker.
enum Scope {
    Page(web_sys::Window),
    Worker(web_sys::WorkerGlobalScope),
}

fn scope() -> Result<Scope> {
    let global = js_sys::global();
    if let Some(w) = global.dyn_ref::<web_sys::Window>() {
        return Ok(Scope::Page(w.clone()));
    }
    if let Some(w) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        return Ok(Scope::Worker(w.clone()));
    }
    Err(Error::Storage("neither a page nor a worker: no fetch or storage here".into()))
}

impl Scope {
    fn fetch(&self, url: &str, init: &web_sys::RequestInit) -> js_sys::Promise {
        match self {
            Scope::Page(w) => w.fetch_with_str_and_init(url, init),
            Scope::Worker(w) => w.fetch_with_str_and_init(url, init),
        }
    }

    fn caches(&self) -> Result<web_sys::CacheStorage> {
        let caches = match self {
            Scope::Page(w) => w.caches(),
            Scope::Worker(w) => w.caches(),
        };
        caches.map_err(|e| Error::Storage(format!("the Cache API is not available ({}); pages served over plain http (not localhost) and some private windows have none", js_message(&e))))
    }

    fn storage(&self) -> web_sys::StorageManager {
        match self {
            Scope::Page(w) => w.navigator().storage(),
            Scope::Worker(w) => w.navigator().storage(),
        }
    }
}

/// The message of a JavaScript error value.
pub fn js_message(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    if let Some(d) = e.dyn_ref::<web_sys::DomException>() {
        return d.message();
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

/// A failed storage call as an [`Error`]: a full quota is [`Error::QuotaFull`].
pub fn storage_error(e: &JsValue) -> Error {
    match e.dyn_ref::<web_sys::DomException>() {
        Some(d) if d.name() == "QuotaExceededError" => Error::QuotaFull { detail: d.message() },
        _ => Error::Storage(js_message(e)),
    }
}

async fn wait(promise: js_sys::Promise) -> std::result::Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

/// Reads a body to its end, keeping what arrived if the transfer breaks off.
async fn read_body(response: &web_sys::Response) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(body) = response.body() else { return out };
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    while let Ok(chunk) = wait(reader.read()).await {
        if Reflect::get(&chunk, &"done".into()).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
            break;
        }
        let Some(bytes) = Reflect::get(&chunk, &"value".into()).ok().and_then(|v| v.dyn_into::<Uint8Array>().ok()) else { break };
        let at = out.len();
        out.resize(at + bytes.length() as usize, 0);
        bytes.copy_to(&mut out[at..]);
    }
    out
}

/// Files under a base URL, by `fetch`. Cross-origin hosts must send CORS headers (see the
/// README: `Access-Control-Allow-Origin`, `Range` allowed, `Content-Range` exposed).
pub struct WebFetcher {
    base: String,
}

impl WebFetcher {
    /// A fetcher for files under `base` (absolute, or relative to the page).
    pub fn new(base: &str) -> Self {
        WebFetcher { base: base.trim_end_matches('/').to_string() }
    }
}

impl Fetcher for WebFetcher {
    async fn fetch(&self, file: &str, range: Option<Range<u64>>) -> Result<Reply> {
        let url = format!("{}/{file}", self.base);
        let fail = |problem: String| Error::Fetch { file: url.clone(), problem };
        let init = web_sys::RequestInit::new();
        init.set_method("GET");
        init.set_mode(web_sys::RequestMode::Cors);
        let headers = web_sys::Headers::new().map_err(|e| fail(js_message(&e)))?;
        if let Some(r) = &range {
            headers.set("Range", &format!("bytes={}-{}", r.start, r.end - 1)).map_err(|e| fail(js_message(&e)))?;
        }
        init.set_headers_headers(&headers);
        let reply = wait(scope()?.fetch(&url, &init)).await.map_err(|e| {
            fail(format!("could not be fetched ({}): the host is unreachable, or it does not send the CORS header Access-Control-Allow-Origin", js_message(&e)))
        })?;
        let response: web_sys::Response = reply.dyn_into().map_err(|_| fail("fetch gave no response".into()))?;
        match response.status() {
            206 => Ok(Reply::Range(read_body(&response).await)),
            200 => Ok(Reply::Whole(read_body(&response).await)),
            s => Err(fail(format!("HTTP {s} {}", response.status_text()))),
        }
    }

    fn origin(&self) -> String {
        self.base.clone()
    }
}

/// Verified tensors and manifests in the Cache API ([`CACHE_NAME`]).
pub struct WebCache {
    cache: web_sys::Cache,
}

impl WebCache {
    /// Opens (or creates) the cache.
    pub async fn open() -> Result<WebCache> {
        let cache = wait(scope()?.caches()?.open(CACHE_NAME)).await.map_err(|e| storage_error(&e))?;
        Ok(WebCache { cache: cache.unchecked_into() })
    }

    async fn read(&self, key: &str) -> Option<Vec<u8>> {
        let found = wait(self.cache.match_with_str(&format!("{KEY_PREFIX}{key}"))).await.ok()?;
        let response: web_sys::Response = found.dyn_into().ok()?;
        let buffer = wait(response.array_buffer().ok()?).await.ok()?;
        Some(Uint8Array::new(&buffer).to_vec())
    }

    async fn write(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let headers = web_sys::Headers::new().map_err(|e| storage_error(&e))?;
        headers.set(SIZE_HEADER, &bytes.len().to_string()).map_err(|e| storage_error(&e))?;
        headers.set("content-type", "application/octet-stream").map_err(|e| storage_error(&e))?;
        let init = web_sys::ResponseInit::new();
        init.set_headers_headers(&headers);
        let body = Uint8Array::from(bytes);
        let response = web_sys::Response::new_with_opt_buffer_source_and_init(Some(&body), &init).map_err(|e| storage_error(&e))?;
        wait(self.cache.put_with_str(&format!("{KEY_PREFIX}{key}"), &response)).await.map_err(|e| storage_error(&e))?;
        Ok(())
    }

    /// Entries and bytes held.
    pub async fn size(&self) -> Result<(usize, u64)> {
        let keys = wait(self.cache.keys()).await.map_err(|e| storage_error(&e))?;
        let keys: js_sys::Array = keys.unchecked_into();
        let mut bytes = 0;
        for request in keys.iter() {
            let Ok(request) = request.dyn_into::<web_sys::Request>() else { continue };
            let Ok(found) = wait(self.cache.match_with_request(&request)).await else { continue };
            let Ok(response) = found.dyn_into::<web_sys::Response>() else { continue };
            bytes += response.headers().get(SIZE_HEADER).ok().flatten().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
        Ok((keys.length() as usize, bytes))
    }
}

impl TensorCache for WebCache {
    fn get<'a>(&'a self, key: &'a str) -> LocalBoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(self.read(key))
    }

    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> LocalBoxFuture<'a, Result<()>> {
        Box::pin(self.write(key, bytes))
    }
}

/// What the browser stores for this site, and what it allows.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageReport {
    /// Entries in [`CACHE_NAME`].
    pub entries: usize,
    /// Bytes they hold.
    pub cached_bytes: u64,
    /// Bytes the whole origin uses, as the browser estimates it.
    pub usage: Option<u64>,
    /// Bytes the origin may use.
    pub quota: Option<u64>,
    /// Whether the browser has agreed not to evict the origin's storage.
    pub persisted: bool,
}

/// Measures the cache and the origin's storage.
pub async fn storage_report() -> Result<StorageReport> {
    let (entries, cached_bytes) = WebCache::open().await?.size().await?;
    let storage = scope()?.storage();
    let estimate = match storage.estimate() {
        Ok(p) => wait(p).await.ok().map(|e| e.unchecked_into::<web_sys::StorageEstimate>()),
        Err(_) => None,
    };
    let persisted = match storage.persisted() {
        Ok(p) => wait(p).await.ok().and_then(|v| v.as_bool()).unwrap_or(false),
        Err(_) => false,
    };
    let usage = estimate.as_ref().and_then(|e| e.get_usage()).map(|v| v as u64);
    let quota = estimate.as_ref().and_then(|e| e.get_quota()).map(|v| v as u64);
    Ok(StorageReport { entries, cached_bytes, usage, quota, persisted })
}

/// Asks the browser to keep this site's storage under pressure; whether it agreed.
pub async fn request_persistence() -> Result<bool> {
    let promise = scope()?.storage().persist().map_err(|e| storage_error(&e))?;
    Ok(wait(promise).await.map_err(|e| storage_error(&e))?.as_bool().unwrap_or(false))
}

/// Deletes every cached tensor and manifest; whether there was a cache to delete.
pub async fn clear_cache() -> Result<bool> {
    let deleted = wait(scope()?.caches()?.delete(CACHE_NAME)).await.map_err(|e| storage_error(&e))?;
    Ok(deleted.as_bool().unwrap_or(false))
}
