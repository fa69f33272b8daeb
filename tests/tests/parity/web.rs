//! The browser half: the converted reference fixture over HTTP, as the page reads a CDN, through
//! `fetch` with Range ([`WebFetcher`]) and the Cache API ([`WebCache`]). `scripts/test.sh`
//! converts the fixture, serves it with `m2ugen serve --test-faults`, and compiles its URL in
//! (`M2UGEN_FIXTURE_URL`).

use m2ugen_gpu::registry::Elem;
use m2ugen_tests::parity::{check_features, check_generation, check_projector, check_prompt_cases, load_model};
use m2ugen_weights::loader::{Event, Fetcher, LoadOptions, Reply};
use m2ugen_weights::safetensors::InMemory;
use m2ugen_weights::web::{clear_cache, storage_error, storage_report, WebCache, WebFetcher};
use m2ugen_weights::Error;
use std::cell::Cell;
use std::collections::BTreeMap;
use wasm_bindgen_test::wasm_bindgen_test;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// Where `scripts/test.sh` serves the converted fixture.
fn base() -> &'static str {
    match option_env!("M2UGEN_FIXTURE_URL") {
        Some(url) => url,
        None => panic!("M2UGEN_FIXTURE_URL is not set: the browser parity tests read the converted fixture over HTTP; run scripts/test.sh, which converts and serves it"),
    }
}

async fn io(fetcher: &WebFetcher) -> InMemory {
    let (Reply::Whole(bytes) | Reply::Range(bytes)) = fetcher.fetch("io.safetensors", None).await.unwrap();
    InMemory::parse("io.safetensors", bytes).unwrap()
}

#[wasm_bindgen_test]
async fn llm_and_projector_match_the_reference_in_the_browser() {
    let fetcher = WebFetcher::new(base());
    let io = io(&fetcher).await;
    let elem = Elem::F32;
    let gpu = m2ugen_tests::gpu(elem).await;
    let model = load_model(&gpu, elem, &fetcher).await.unwrap();
    // "audio" is checked natively; the browser keeps the cases without media and with all three.
    check_prompt_cases(&gpu, elem, &model.llama, &io, &["none", "all"]).await.unwrap_or_else(|e| panic!("{e:#}"));
    check_features(&gpu, elem, &model.encoders, &io, 1).await.unwrap_or_else(|e| panic!("media features: {e:#}"));
    check_projector(&gpu, elem, &model, &io).await.unwrap_or_else(|e| panic!("{e:#}"));
    check_generation(&gpu, elem, &model, &io).await.unwrap_or_else(|e| panic!("generation: {e:#}"));
}

/// Every tensor of the model at `fetcher`, the events, and whether the manifest came from the
/// cache.
async fn load_all<F: Fetcher>(fetcher: &F, cache: Option<&WebCache>) -> Result<(BTreeMap<String, Vec<u8>>, Vec<Event>, bool), Error> {
    let clock = m2ugen_gpu::now_ms;
    let cache = cache.map(|c| c as &dyn m2ugen_weights::loader::TensorCache);
    m2ugen_weights::loader::load_all(fetcher, &LoadOptions { in_flight: 4, max_resumes: 3, clock: &clock, cache }).await
}

fn notices(events: &[Event]) -> Vec<String> {
    events.iter().filter_map(|e| if let Event::Notice(n) = e { Some(n.clone()) } else { None }).collect()
}

/// The network switched off: the same origin as the real fetcher (so the cache's keys match),
/// every request refused.
struct NoNetwork {
    origin: String,
    tries: Cell<usize>,
}

impl Fetcher for NoNetwork {
    async fn fetch(&self, file: &str, _: Option<std::ops::Range<u64>>) -> m2ugen_weights::Result<Reply> {
        self.tries.set(self.tries.get() + 1);
        Err(Error::Fetch { file: format!("{}/{file}", self.origin), problem: "could not be fetched (Failed to fetch)".into() })
    }

    fn origin(&self) -> String {
        self.origin.clone()
    }
}

#[wasm_bindgen_test]
async fn a_second_visit_loads_from_the_cache_with_no_network_and_clearing_frees_it() {
    clear_cache().await.unwrap();
    assert_eq!(storage_report().await.unwrap().entries, 0);
    let online = WebFetcher::new(base());
    let cache = WebCache::open().await.unwrap();
    let (first, _, offline) = load_all(&online, Some(&cache)).await.unwrap();
    assert!(!offline);

    // What the cache holds: every distinct tensor (entries are content hashes) and the manifest.
    let manifest = m2ugen_weights::loader::load_manifest(&online).await.unwrap();
    let mut distinct = BTreeMap::new();
    for t in &manifest.tensors {
        distinct.insert(t.sha256.clone(), t.bytes);
    }
    let (Reply::Whole(manifest_bytes) | Reply::Range(manifest_bytes)) = online.fetch("manifest.json", None).await.unwrap();
    let report = storage_report().await.unwrap();
    assert_eq!(report.entries, distinct.len() + 1, "{report:?}");
    assert_eq!(report.cached_bytes, distinct.values().sum::<u64>() + manifest_bytes.len() as u64, "{report:?}");
    assert!(report.usage.is_some_and(|u| u >= report.cached_bytes) && report.quota.is_some_and(|q| q > 0), "{report:?}");

    let offline_fetcher = NoNetwork { origin: online.origin(), tries: Cell::new(0) };
    let (second, events, offline) = load_all(&offline_fetcher, Some(&cache)).await.unwrap();
    assert!(offline, "the manifest came from the cache");
    assert_eq!(second, first);
    assert_eq!(offline_fetcher.tries.get(), 1, "only the manifest was tried");
    let last = events.iter().rev().find_map(|e| if let Event::Progress(p) = e { Some(*p) } else { None }).unwrap();
    assert_eq!((last.cached, last.done), (last.total, last.total));

    assert!(clear_cache().await.unwrap());
    assert_eq!(storage_report().await.unwrap().cached_bytes, 0);
    let cache = WebCache::open().await.unwrap();
    let e = load_all(&offline_fetcher, Some(&cache)).await.unwrap_err().to_string();
    assert_eq!(e, format!("{}/manifest.json: could not be fetched (Failed to fetch)", online.origin()));
    clear_cache().await.unwrap();
}

#[wasm_bindgen_test]
async fn fetch_resumes_falls_back_and_refetches_in_the_browser() {
    let (reference, _, _) = load_all(&WebFetcher::new(base()), None).await.unwrap();
    for (prefix, said) in [("cut", "resuming"), ("no-ranges", "ignores range requests"), ("corrupt", "hash mismatch, fetching it again")] {
        let (got, events, _) = load_all(&WebFetcher::new(&format!("{}/{prefix}", base())), None).await.unwrap();
        assert!(got == reference, "{prefix}: the tensors differ");
        assert!(notices(&events).iter().any(|n| n.contains(said)), "{prefix}: {:?}", notices(&events));
    }
    let e = WebFetcher::new(base()).fetch("no-such-file.bin", None).await.unwrap_err().to_string();
    assert_eq!(e, format!("{}/no-such-file.bin: HTTP 404 Not Found", base()));
    let e = WebFetcher::new("http://127.0.0.1:9").fetch("manifest.json", None).await.unwrap_err().to_string();
    assert!(e.starts_with("http://127.0.0.1:9/manifest.json: could not be fetched (") && e.ends_with("it does not send the CORS header Access-Control-Allow-Origin"), "{e}");
}

#[wasm_bindgen_test]
async fn persistence_is_asked_for_and_a_full_quota_has_its_own_message() {
    // Headless Chromium answers without a prompt; either answer is an answer.
    let persisted = m2ugen_weights::web::request_persistence().await.unwrap();
    assert_eq!(storage_report().await.unwrap().persisted, persisted);
    let full = web_sys::DomException::new_with_message_and_name("The quota has been exceeded.", "QuotaExceededError").unwrap();
    let e = storage_error(&full);
    assert_eq!(e, Error::QuotaFull { detail: "The quota has been exceeded.".into() });
    assert!(e.to_string().starts_with("browser storage is full (The quota has been exceeded.): the model still loads, but will be downloaded again next visit"));
    let other = web_sys::DomException::new_with_message_and_name("The operation is insecure.", "SecurityError").unwrap();
    assert_eq!(storage_error(&other), Error::Storage("The operation is insecure.".into()));
}

#[wasm_bindgen_test]
async fn the_converted_tokenizer_loads_and_encodes_in_the_browser() {
    let fetcher = WebFetcher::new(base());
    let manifest = m2ugen_weights::loader::load_manifest(&fetcher).await.unwrap();
    let entry = manifest.tokenizer.as_ref().expect("the served fixture has a tokenizer (scripts/test.sh converts it with --tokenizer)");
    let json = m2ugen_weights::loader::load_file(&fetcher, entry, None).await.unwrap();
    let tokenizer = m2ugen_pipeline::tokenizer::TextTokenizer::from_bytes(&json).unwrap();
    m2ugen_tests::parity::check_tokenizer(&tokenizer).unwrap_or_else(|e| panic!("{e:#}"));
    // A tokenizer entry whose hash does not match what the server has is named.
    let wrong = m2ugen_weights::FileEntry { sha256: "0".repeat(64), ..entry.clone() };
    let e = m2ugen_weights::loader::load_file(&fetcher, &wrong, None).await.unwrap_err().to_string();
    assert!(e.starts_with("tokenizer.json does not match its SHA-256 (fetched twice)"), "{e}");
}
