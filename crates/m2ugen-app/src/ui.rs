//! The page's components (Leptos, client-side). Small and documented; the state they share is
//! [`State`], and everything the models do goes through the engine ([`crate::worker`]).
//!
//! User-visible text (questions, answers, prompts, file names, error messages) is always
//! inserted as text nodes, never as HTML.

use crate::forms::{check_model_url, medium_of_file, music_request, profile_url, MusicForm, PROFILES};
use crate::display::{format_bytes, format_duration, format_progress, peaks, waveform_path};
use crate::media::{decode_image, decode_music, decode_video, file_bytes, Limits};
use crate::protocol::{Attachment, DecoderInfo, Envelope, Failure, FromEngine, Medium, ModelInfo, ToEngine, TrackInfo, Unit};
use crate::worker::EngineHandle;
use crate::GpuStatus;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos::wasm_bindgen::JsCast;
use std::collections::BTreeMap;

/// The default model: the bundled tiny one, beside the page.
pub const DEFAULT_MODEL: &str = "model";

/// What is under way.
#[derive(Clone, Debug, PartialEq)]
pub enum Busy {
    /// Starting the GPU.
    Starting,
    /// Loading a model.
    Loading,
    /// Hearing an attachment (decoding, then the encoder).
    Attaching(String),
    /// Answering a question.
    Answering(u32),
    /// Making music: job, done, asked, and whether frames or denoising steps are counted.
    Making(u32, usize, usize, Unit),
    /// Opening a share link: the denoising steps done and asked, once an AudioLDM 2 recipe is
    /// being made again.
    Opening(Option<(usize, usize)>),
}

/// One question and its answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Turn {
    /// Its number.
    pub id: u32,
    /// The question.
    pub question: String,
    /// The attachment it was asked about.
    pub attachment: Option<String>,
    /// The answer so far.
    pub answer: String,
    /// Whether the answer is complete (or stopped, or failed).
    pub done: bool,
}

/// A track on the page.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackView {
    /// What the engine said of it.
    pub info: TrackInfo,
    /// The WAV's object URL.
    pub url: String,
    /// Seconds of audio.
    pub seconds: f64,
    /// The waveform's SVG path (in a 600 × 80 box).
    pub path: String,
    /// The SHA-256 of its samples (what the share-link test compares).
    pub samples_sha256: String,
    /// Its place among the tracks made on this page, from 1 (a shared track opened here has
    /// none): questions asked in between do not count, though they take job numbers.
    pub number: Option<usize>,
}

/// The page's state, shared by its components.
#[derive(Clone, Copy)]
pub struct State {
    /// The GPU line.
    pub gpu: RwSignal<GpuStatus>,
    /// Where the engine runs, once known.
    pub in_worker: RwSignal<Option<bool>>,
    /// The model URL typed or given by `?model=`.
    pub model_url: RwSignal<String>,
    /// The loaded model.
    pub model: RwSignal<Option<ModelInfo>>,
    /// Loading progress, by part.
    pub loading: RwSignal<BTreeMap<String, String>>,
    /// What is under way.
    pub busy: RwSignal<Option<Busy>>,
    /// The conversation.
    pub turns: RwSignal<Vec<Turn>>,
    /// The attachment the model hears.
    pub attachment: RwSignal<Option<String>>,
    /// The LLM's answer that conditions the music being made (caption and embedding modes).
    pub caption: RwSignal<String>,
    /// Tracks made or opened.
    pub tracks: RwSignal<Vec<TrackView>>,
    /// The last failure.
    pub error: RwSignal<Option<(Failure, String)>>,
    /// Notices (fallbacks, cache, offline).
    pub notices: RwSignal<Vec<String>>,
    /// The weight cache, in words.
    pub cache: RwSignal<String>,
    /// A share link waiting for the GPU.
    pub pending_link: RwSignal<Option<String>>,
    /// Most tokens of an answer (the chat's, and the description that conditions music).
    pub answer_tokens: RwSignal<String>,
    /// The next turn or job number.
    next_id: RwSignal<u32>,
}

impl State {
    fn new() -> State {
        State {
            gpu: RwSignal::new(GpuStatus::Pending),
            in_worker: RwSignal::new(None),
            model_url: RwSignal::new(model_from_query(&location_search()).unwrap_or_else(|_| DEFAULT_MODEL.into())),
            model: RwSignal::new(None),
            loading: RwSignal::new(BTreeMap::new()),
            busy: RwSignal::new(Some(Busy::Starting)),
            turns: RwSignal::new(Vec::new()),
            attachment: RwSignal::new(None),
            caption: RwSignal::new(String::new()),
            tracks: RwSignal::new(Vec::new()),
            error: RwSignal::new(None),
            notices: RwSignal::new(Vec::new()),
            cache: RwSignal::new(String::new()),
            pending_link: RwSignal::new(None),
            answer_tokens: RwSignal::new("128".into()),
            next_id: RwSignal::new(1),
        }
    }

    fn next(&self) -> u32 {
        let id = self.next_id.get_untracked();
        self.next_id.set(id + 1);
        id
    }

    fn fail(&self, failure: Failure, message: impl Into<String>) {
        self.error.set(Some((failure, message.into())));
    }
}

/// The model URL of a page query (`?model=…`): a path on this site or an `https://` URL (or
/// `http://` on this machine); anything else is refused with a message.
pub fn model_from_query(search: &str) -> Result<String, String> {
    let query = search.strip_prefix('?').unwrap_or(search);
    let Some(value) = query.split('&').find_map(|kv| kv.strip_prefix("model=")) else { return Ok(DEFAULT_MODEL.into()) };
    let value = js_sys::decode_uri_component(value).ok().and_then(|v| v.as_string()).ok_or("?model= is not valid URL encoding")?;
    check_model_url(&value, &allowed_origins()).map(str::to_string)
}

/// The origins the page's Content-Security-Policy lets it fetch from, besides its own.
pub fn allowed_origins() -> Vec<String> {
    let Some(meta) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.query_selector("meta[http-equiv=Content-Security-Policy]").ok().flatten()) else { return Vec::new() };
    let policy = meta.get_attribute("content").unwrap_or_default();
    policy.split(';').map(str::trim).find_map(|d| d.strip_prefix("connect-src ")).map(|s| s.split_whitespace().filter(|o| o.starts_with("http")).map(str::to_string).collect()).unwrap_or_default()
}

fn location_search() -> String {
    web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default()
}

fn location_hash() -> String {
    web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default()
}

/// The engine, where the page keeps it.
type Engine = StoredValue<Option<EngineHandle>, LocalStorage>;

fn send(engine: Engine, msg: ToEngine) {
    send_with(engine, Envelope::bare(msg));
}

fn send_with(engine: Engine, env: Envelope<ToEngine>) {
    engine.with_value(|e| {
        if let Some(e) = e {
            e.send(env)
        }
    });
}

/// Whether the page itself has `navigator.gpu`.
fn page_has_webgpu() -> bool {
    web_sys::window().map(|w| js_sys::Reflect::get(&w.navigator(), &"gpu".into()).is_ok_and(|g| !g.is_undefined() && !g.is_null())).unwrap_or(false)
}

/// The page's own wasm-bindgen script and wasm (from the boot script's tag), for the worker.
fn own_scripts() -> Option<(String, String)> {
    let tag = web_sys::window()?.document()?.query_selector("script[data-js][data-wasm]").ok()??;
    Some((tag.get_attribute("data-js")?, tag.get_attribute("data-wasm")?))
}

/// Starts the engine: in a worker when the page was booted by `boot.js`, else (the component
/// tests) on the page's thread.
fn start_engine(state: State, engine: Engine) {
    let handle = match own_scripts() {
        Some((js, wasm)) => match EngineHandle::in_worker_thread(&js, &wasm, test_hook("no-worker-gpu"), move |env| on_reply(state, engine, env)) {
            Ok(h) => h,
            Err(e) => {
                state.notices.update(|n| n.push(format!("The engine's worker could not start ({e}): it runs on the page's thread.")));
                page_thread(state, engine)
            }
        },
        None => page_thread(state, engine),
    };
    let worker = handle.in_worker();
    engine.set_value(Some(handle));
    if !worker {
        send(engine, ToEngine::Start { f16: true });
    }
}

fn page_thread(state: State, engine: Engine) -> EngineHandle {
    EngineHandle::on_page_thread(move |env| on_reply(state, engine, env))
}

/// What the page does with each reply.
fn on_reply(state: State, engine: Engine, env: Envelope<FromEngine>) {
    match env.msg {
        FromEngine::Ready => send(engine, ToEngine::Start { f16: true }),
        FromEngine::Gpu { description, f16, in_worker } => {
            state.gpu.set(GpuStatus::Ready(format!("{description}{}", if f16 { "" } else { " (computing in f32)" })));
            state.in_worker.set(Some(in_worker));
            if !in_worker {
                state.notices.update(|n| n.push("This browser offers WebGPU to pages but not to workers: the model runs on the page's thread, which may pause between steps.".into()));
            }
            // After a lost device the model is still reloading: the page waits for Loaded.
            if state.busy.get_untracked() == Some(Busy::Starting) {
                state.busy.set(None);
            }
            if let Some(link) = state.pending_link.get_untracked() {
                state.pending_link.set(None);
                open_link(state, engine, link);
            }
        }
        FromEngine::Progress { part, done, total, cached, rate, eta_s } => {
            state.loading.update(|l| {
                l.insert(part, format_progress(done, total, cached, rate, eta_s));
            });
        }
        FromEngine::Notice(text) => state.notices.update(|n| {
            // Said once (a recovered device repeats its start-up notices).
            if !n.contains(&text) {
                n.push(text)
            }
        }),
        FromEngine::Loaded(info) => {
            state.model.set(Some(info));
            state.busy.set(None);
            state.attachment.set(None);
            refresh_cache(state);
        }
        FromEngine::Attached { name } => {
            state.attachment.set(Some(name));
            state.busy.set(None);
        }
        FromEngine::Text { turn, delta } => {
            let mut found = false;
            state.turns.update(|turns| {
                if let Some(t) = turns.iter_mut().find(|t| t.id == turn) {
                    t.answer.push_str(&delta);
                    found = true;
                }
            });
            if !found {
                state.caption.update(|c| c.push_str(&delta));
            }
        }
        FromEngine::Answered { turn, stopped } => {
            state.turns.update(|turns| {
                if let Some(t) = turns.iter_mut().find(|t| t.id == turn) {
                    t.done = true;
                    if stopped {
                        t.answer.push_str(" [stopped]");
                    }
                }
            });
            state.busy.set(None);
        }
        FromEngine::Stopped { .. } => {
            state.notices.update(|n| n.push("Stopped before any music was made.".into()));
            state.busy.set(None);
        }
        FromEngine::Making { job, done, total, unit } => match state.busy.get_untracked() {
            Some(Busy::Opening(_)) => state.busy.set(Some(Busy::Opening(Some((done, total))))),
            _ => state.busy.set(Some(Busy::Making(job, done, total, unit))),
        },
        FromEngine::Track(info) => {
            let samples = env.data.unwrap_or_default();
            let made = state.tracks.with_untracked(|t| t.iter().filter(|v| v.number.is_some()).count());
            let number = (info.mode != "shared").then_some(made + 1);
            match track_view(info, number, &samples) {
                Ok(view) => state.tracks.update(|t| t.insert(0, view)),
                Err(e) => state.fail(Failure::Other, e),
            }
            state.busy.set(None);
            // A shared track's EnCodec was just kept.
            refresh_cache(state);
        }
        FromEngine::Failed { job, failure, message } => {
            if failure == Failure::Gpu && state.in_worker.get_untracked().is_none() && engine.with_value(|e| e.as_ref().is_some_and(EngineHandle::in_worker)) && page_has_webgpu() {
                // No WebGPU in this browser's workers: the same engine on the page's thread.
                engine.with_value(|e| e.as_ref().map(EngineHandle::terminate));
                let handle = page_thread(state, engine);
                engine.set_value(Some(handle));
                send(engine, ToEngine::Start { f16: true });
                return;
            }
            if failure == Failure::Gpu && state.model.get_untracked().is_none() {
                state.gpu.set(GpuStatus::Failed(message.clone()));
            }
            if let Some(job) = job {
                state.turns.update(|turns| {
                    if let Some(t) = turns.iter_mut().find(|t| t.id == job) {
                        t.done = true;
                    }
                });
            }
            if failure == Failure::DeviceLost {
                // The engine recreates the device and reloads; the page waits for Loaded.
                state.busy.set(Some(Busy::Loading));
            } else {
                if state.busy.get_untracked() == Some(Busy::Loading) {
                    // A failed load has dropped the model that was there.
                    state.model.set(None);
                    state.attachment.set(None);
                }
                state.busy.set(None);
            }
            state.fail(failure, message);
        }
    }
}

/// A track's WAV, waveform and checksum.
fn track_view(info: TrackInfo, number: Option<usize>, samples: &[f32]) -> Result<TrackView, String> {
    use sha2::Digest;
    let wav = m2ugen_media::wav_bytes(samples, info.rate, 1).map_err(|e| e.to_string())?;
    let url = gloo_file::ObjectUrl::from(gloo_file::Blob::new_with_options(wav.as_slice(), Some("audio/wav")));
    let bytes: Vec<u8> = samples.iter().flat_map(|v| v.to_le_bytes()).collect();
    let samples_sha256 = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    // The URL lives as long as the page (the track stays playable and downloadable).
    let url_text = url.to_string();
    std::mem::forget(url);
    Ok(TrackView { seconds: samples.len() as f64 / info.rate.max(1) as f64, path: waveform_path(&peaks(samples, 300), 600.0, 80.0), info, url: url_text, samples_sha256, number })
}

fn open_link(state: State, engine: Engine, link: String) {
    // The model URL field may have been edited since it was last checked: a link only decodes
    // with EnCodec from a model the page may fetch.
    let url = match check_model_url(&state.model_url.get_untracked(), &allowed_origins()) {
        Ok(url) => url.to_string(),
        Err(e) => return state.fail(Failure::Input, format!("the share link cannot be opened: {e}")),
    };
    let job = state.next();
    state.busy.set(Some(Busy::Opening(None)));
    send(engine, ToEngine::OpenShared { job, url, link });
}

fn refresh_cache(state: State) {
    spawn_local(async move {
        let text = match m2ugen_weights::web::storage_report().await {
            Ok(r) => {
                let mut s = format!("{} kept by this browser ({} entries)", format_bytes(r.cached_bytes), r.entries);
                if let (Some(usage), Some(quota)) = (r.usage, r.quota) {
                    s.push_str(&format!("; this site uses {} of {} allowed", format_bytes(usage), format_bytes(quota)));
                }
                s
            }
            Err(e) => format!("The weight cache cannot be read: {e}"),
        };
        state.cache.set(text);
    });
}

/// Whether the page's address asks for the end-to-end tests' hooks (`?test-hooks`), or for
/// the one named (`?test-hooks=NAME`).
fn test_hook(name: &str) -> bool {
    location_search().split(['?', '&']).any(|kv| kv == "test-hooks" && name.is_empty() || kv.strip_prefix("test-hooks=").is_some_and(|v| name.is_empty() || v == name))
}

/// For the end-to-end tests (`?test-hooks`): `window.m2ugenLoseDevice()` destroys the GPU
/// device, as a driver reset would. Harmless to a user: it only costs them a reload.
fn install_test_hooks(engine: Engine) {
    let lose = wasm_bindgen::closure::Closure::<dyn Fn()>::new(move || send(engine, ToEngine::LoseDevice));
    if let Some(window) = web_sys::window() {
        let _ = js_sys::Reflect::set(&window, &"m2ugenLoseDevice".into(), lose.as_ref());
    }
    lose.forget();
}

/// The whole page.
#[component]
pub fn App() -> impl IntoView {
    let state = State::new();
    provide_context(state);
    let engine: Engine = StoredValue::new_local(None);
    if let Err(e) = model_from_query(&location_search()) {
        state.fail(Failure::Input, format!("?model=: {e}; the bundled model is used instead"));
    }
    let hash = location_hash();
    if hash.starts_with("#m2ugen=") {
        state.pending_link.set(Some(hash));
    } else if hash.len() > 1 {
        state.fail(Failure::Link, format!("this page's address ends in '{}', which is not a share link (they start with #m2ugen=)", hash.chars().take(40).collect::<String>()));
    }
    start_engine(state, engine);
    if test_hook("") {
        install_test_hooks(engine);
    }
    // A share link opened while the page is open.
    let listener = gloo_events::EventListener::new(&web_sys::window().expect("a page has a window"), "hashchange", move |_| {
        let hash = location_hash();
        if hash.starts_with("#m2ugen=") {
            if state.gpu.get_untracked() == GpuStatus::Pending {
                state.pending_link.set(Some(hash));
            } else if state.busy.get_untracked().is_some() {
                state.fail(Failure::Link, "a share link was opened while the page is busy: stop or wait for the work under way, then open the link again");
            } else {
                open_link(state, engine, hash);
            }
        }
    });
    let listener = StoredValue::new_local(Some(listener));
    on_cleanup(move || listener.set_value(None));
    refresh_cache(state);
    view! {
        <header>
            <h1>"m2ugen-web"</h1>
            <p class="tagline">"Music understanding and generation, on your GPU, in this tab. Nothing leaves your machine but weight downloads."</p>
            <AdapterStatus status=state.gpu />
        </header>
        <main>
            <ErrorBox />
            <Notices />
            <ModelPanel engine=engine />
            <ChatPanel engine=engine />
            <MusicPanel engine=engine />
            <TrackList />
        </main>
    }
}

/// The GPU line: pending, the adapter found, or the reason there is none.
#[component]
pub fn AdapterStatus(
    /// The GPU state to show.
    #[prop(into)]
    status: Signal<GpuStatus>,
) -> impl IntoView {
    move || match status.get() {
        GpuStatus::Pending => view! { <p data-testid="adapter-pending">"Looking for a GPU…"</p> }.into_any(),
        GpuStatus::Ready(description) => view! { <p data-testid="adapter">"GPU: " {description}</p> }.into_any(),
        GpuStatus::Failed(message) => view! { <p class="error" role="alert" data-testid="adapter-error">{message}</p> }.into_any(),
    }
}

/// The heading of each kind of failure: what happened, in a word the user can act on.
pub fn failure_title(failure: Failure) -> &'static str {
    match failure {
        Failure::Gpu => "No usable GPU",
        Failure::DeviceLost => "The GPU was reset",
        Failure::Network => "Download failed",
        Failure::Storage => "Browser storage",
        Failure::Model => "This model cannot be used",
        Failure::Input => "Check the request",
        Failure::Media => "This file cannot be used",
        Failure::Link => "This share link cannot be opened",
        Failure::Other => "Something went wrong",
    }
}

/// What to do about each kind of failure.
fn failure_advice(failure: Failure) -> &'static str {
    match failure {
        Failure::Gpu => "Use a browser with WebGPU (a recent Chrome, Edge or Safari), or enable it in Firefox.",
        Failure::DeviceLost => "The page recreates the device and reloads the model from this browser's cache.",
        Failure::Network => "Check the connection and press Load again: the parts already verified are kept and not downloaded again.",
        Failure::Storage => "Free space with 'Clear downloaded weights', or allow this site more storage.",
        Failure::Model => "Point the page at a model converted by `m2ugen convert` (see the README).",
        Failure::Input | Failure::Other => "",
        Failure::Media => "Try a WAV, MP3, FLAC or OGG clip, a PNG or JPEG image, or an MP4 or WebM video.",
        Failure::Link => "Ask for the link again, copied whole, or open it with the model it was made with.",
    }
}

/// The last failure, its own heading per kind, dismissable.
#[component]
fn ErrorBox() -> impl IntoView {
    let state = expect_context::<State>();
    move || {
        state.error.get().map(|(failure, message)| {
            let kind = format!("error-{}", format!("{failure:?}").to_lowercase());
            view! {
                <section class="error" role="alert" data-testid=kind>
                    <h2>{failure_title(failure)}</h2>
                    <p class="message">{message}</p>
                    <p>{failure_advice(failure)}</p>
                    <button type="button" on:click=move |_| state.error.set(None)>"Dismiss"</button>
                </section>
            }
        })
    }
}

/// Notices: fallbacks, the cache, working offline.
#[component]
fn Notices() -> impl IntoView {
    let state = expect_context::<State>();
    view! {
        <div role="status" data-testid="notices">
            <ul class="notices">
                {move || state.notices.get().into_iter().map(|n| view! { <li>{n}</li> }).collect_view()}
            </ul>
        </div>
    }
}

/// The model: its URL, loading progress by part, what it can do, and the weight cache.
#[component]
fn ModelPanel(engine: Engine) -> impl IntoView {
    let state = expect_context::<State>();
    let load = move |_| match check_model_url(&state.model_url.get_untracked(), &allowed_origins()) {
        Ok(url) => {
            let url = url.to_string();
            state.error.set(None);
            state.loading.set(BTreeMap::new());
            state.busy.set(Some(Busy::Loading));
            send(engine, ToEngine::Load { url });
        }
        Err(e) => state.fail(Failure::Input, e),
    };
    let clear = move |_| {
        spawn_local(async move {
            match m2ugen_weights::web::clear_cache().await {
                Ok(_) => state.notices.update(|n| n.push("Downloaded weights cleared.".into())),
                Err(e) => state.fail(Failure::Storage, e.to_string()),
            }
            refresh_cache(state);
        })
    };
    let busy = move || state.busy.get().is_some();
    // A profile fills the URL field; the field stays editable for any other folder.
    let pick = move |ev: web_sys::Event| {
        let choice = event_target_value(&ev);
        let url = match choice.parse::<usize>().ok().and_then(|i| PROFILES.get(i)) {
            Some(p) => profile_url(p, &allowed_origins()),
            None => DEFAULT_MODEL.to_string(),
        };
        state.model_url.set(url);
    };
    let base = allowed_origins().first().map_or_else(|| "models/ on this site".to_string(), |o| format!("{o}/"));
    view! {
        <section aria-labelledby="model-heading">
            <h2 id="model-heading">"Model"</h2>
            <div class="row">
                <label for="model-profile">"Model"</label>
                <select id="model-profile" data-testid="profile" on:change=pick disabled=busy>
                    <option value="bundled" selected=true>"Bundled tiny model (untrained, works offline)"</option>
                    {PROFILES.iter().enumerate().map(|(i, p)| view! { <option value=i.to_string()>{p.label}</option> }).collect_view()}
                </select>
            </div>
            <p class="hint">"Each named model is a folder converted with m2ugen convert (the README gives the commands), expected under " {base} "."</p>
            <div class="row">
                <label for="model-url">"Model URL (a folder with manifest.json)"</label>
                <input id="model-url" type="text" bind:value=state.model_url autocomplete="off" spellcheck="false" />
                <button type="button" data-testid="load" on:click=load disabled=busy>"Load model"</button>
            </div>
            <ul class="progress" data-testid="load-progress" aria-live="polite">
                {move || state.loading.get().into_iter().map(|(part, line)| view! { <li>{part} ": " {line}</li> }).collect_view()}
            </ul>
            {move || state.model.get().map(|m| view! { <ModelSummary info=m /> })}
            <p class="cache" data-testid="cache">{move || state.cache.get()}</p>
            <button type="button" on:click=clear>"Clear downloaded weights"</button>
        </section>
    }
}

/// What the loaded model is and can do; for the bundled model, that it is untrained.
#[component]
fn ModelSummary(info: ModelInfo) -> impl IntoView {
    let mut can = Vec::new();
    if info.chat {
        let hears: Vec<&str> = info.hears.iter().map(|m| medium_name(*m)).collect();
        can.push(if hears.is_empty() { "answers questions".to_string() } else { format!("answers questions about {}", hears.join(", ")) });
    }
    if info.music {
        let decoders: Vec<String> = info.decoders.iter().map(|d| format!("{} ({} mode)", d.title, d.modes.join(", "))).collect();
        can.push(format!("makes music with {}", decoders.join(" or ")));
    }
    let untrained = info.untrained.then(|| {
        view! {
            <p class="warning" data-testid="untrained">
                "This is the bundled tiny model: it is untrained, so its answers are random text and its music is noise. "
                "To use M2UGen itself, convert the official checkpoints with `m2ugen convert` (see the README), serve the folder, and open this page with ?model= set to its URL."
            </p>
        }
    });
    view! {
        <p data-testid="model-loaded">"Loaded '" {info.id.clone()} "' (" {format_bytes(info.bytes)} "): it " {can.join(" and ")} "."</p>
        {untrained}
    }
}

fn medium_name(m: Medium) -> &'static str {
    match m {
        Medium::Music => "music",
        Medium::Image => "images",
        Medium::Video => "video",
    }
}

/// Decodes a file the user gave (picked, dropped or recorded) and attaches it.
fn attach_file(state: State, engine: Engine, file: web_sys::File) {
    let Some(model) = state.model.get_untracked() else {
        state.fail(Failure::Input, "load a model before attaching a file");
        return;
    };
    if state.busy.get_untracked().is_some() {
        state.fail(Failure::Input, format!("{}: wait for the work under way to finish (or stop it), then attach it again", file.name()));
        return;
    }
    let name = file.name();
    let Some(medium) = medium_of_file(&name, &file.type_()) else {
        state.fail(Failure::Media, format!("{name}: is neither music, an image nor a video this page knows (type '{}')", file.type_()));
        return;
    };
    if !model.hears.contains(&medium) {
        state.fail(Failure::Media, format!("{name}: the model '{}' does not hear {}", model.id, medium_name(medium)));
        return;
    }
    state.busy.set(Some(Busy::Attaching(name.clone())));
    state.error.set(None);
    spawn_local(async move {
        let limits = Limits::default();
        let decoded = async {
            let bytes = file_bytes(&file, &limits).await?;
            match medium {
                Medium::Music => decode_music(&name, &bytes, &limits).await.map(|s| ([0, 0, 0, 0], s)),
                Medium::Image => decode_image(&name, &bytes, &limits).await.map(|p| ([p.frames, p.channels, p.height, p.width], p.values)),
                Medium::Video => decode_video(&name, &bytes, model.video_frames.unwrap_or(32), &limits).await.map(|p| ([p.frames, p.channels, p.height, p.width], p.values)),
            }
        }
        .await;
        match decoded {
            Ok((shape, values)) => send_with(engine, Envelope { msg: ToEngine::Attach(Attachment { medium, name, shape }), data: Some(values) }),
            Err(e) => {
                state.busy.set(None);
                state.fail(Failure::Media, e.to_string());
            }
        }
    });
}

/// The conversation: earlier turns, the question box, attachments (picker, drop, microphone).
#[component]
fn ChatPanel(engine: Engine) -> impl IntoView {
    let state = expect_context::<State>();
    let question = RwSignal::new(String::new());
    let ask = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let q = question.get_untracked();
        if q.trim().is_empty() {
            state.fail(Failure::Input, "the question is empty: write something first");
            return;
        }
        let max_tokens = match crate::forms::answer_length(&state.answer_tokens.get_untracked()) {
            Ok(n) => n,
            Err(e) => return state.fail(Failure::Input, e),
        };
        let id = state.next();
        state.turns.update(|t| t.push(Turn { id, question: q.clone(), attachment: state.attachment.get_untracked(), answer: String::new(), done: false }));
        question.set(String::new());
        state.error.set(None);
        state.busy.set(Some(Busy::Answering(id)));
        send(engine, ToEngine::Ask { turn: id, question: q, seed: 0, max_tokens });
    };
    let on_files = move |files: Option<web_sys::FileList>| {
        if let Some(file) = files.and_then(|f| f.get(0)) {
            attach_file(state, engine, file);
        }
    };
    let picked = move |ev: leptos::ev::Event| {
        let input: Option<web_sys::HtmlInputElement> = ev.target().and_then(|t| t.dyn_into().ok());
        on_files(input.as_ref().and_then(|i| i.files()));
        if let Some(i) = input {
            // The same file can be picked again.
            i.set_value("");
        }
    };
    let dropped = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        on_files(ev.data_transfer().and_then(|d| d.files()));
    };
    let detach = move |_| {
        state.attachment.set(None);
        send(engine, ToEngine::Detach);
    };
    let busy = move || state.busy.get().is_some();
    let shown = move || state.model.get().is_some_and(|m| m.chat);
    view! {
        <Show when=shown>
            <section aria-labelledby="chat-heading" class="chat" on:dragover=|ev: leptos::ev::DragEvent| ev.prevent_default() on:drop=dropped>
                <h2 id="chat-heading">"Ask about music"</h2>
                <ol class="turns" aria-live="polite" data-testid="turns">
                    {move || state.turns.get().into_iter().map(|t| view! {
                        <li class="turn">
                            <p class="question"><strong>"You: "</strong>{t.question}{t.attachment.map(|a| format!(" (about {a})"))}</p>
                            <p class="answer" data-testid="answer" data-done=t.done.to_string()><strong>"M2UGen: "</strong>{t.answer}</p>
                        </li>
                    }).collect_view()}
                </ol>
                <div class="row attach">
                    <label for="attach-file">"Attach music, an image or a video (or drop it here)"</label>
                    <input id="attach-file" data-testid="attach" type="file" accept="audio/*,image/*,video/*" on:change=picked disabled=busy />
                    <Recorder engine=engine />
                </div>
                <p data-testid="attachment">{move || match (state.attachment.get(), state.busy.get()) {
                    (_, Some(Busy::Attaching(name))) => format!("Listening to {name}…"),
                    (Some(name), _) => format!("The model hears {name}."),
                    (None, _) => "Nothing attached.".to_string(),
                }}</p>
                <button type="button" on:click=detach disabled=move || state.attachment.get().is_none()>"Remove attachment"</button>
                <form on:submit=ask class="ask">
                    <label for="question">"Your question"</label>
                    <textarea id="question" data-testid="question" rows="2" bind:value=question maxlength="2000"></textarea>
                    <label for="answer-tokens">"Longest answer (tokens; also the description music is made from)"</label>
                    <input id="answer-tokens" data-testid="answer-tokens" type="number" min="1" max="1024" step="1" bind:value=state.answer_tokens />
                    <button type="submit" data-testid="ask" disabled=busy>"Ask"</button>
                    <button type="button" data-testid="stop-answer" aria-label="Stop the answer" on:click=move |_| send(engine, ToEngine::Stop) disabled=move || !matches!(state.busy.get(), Some(Busy::Answering(_)))>"Stop"</button>
                </form>
            </section>
        </Show>
    }
}

/// Records music from the microphone, then attaches it.
#[component]
fn Recorder(engine: Engine) -> impl IntoView {
    let state = expect_context::<State>();
    let recorder: StoredValue<Option<web_sys::MediaRecorder>, LocalStorage> = StoredValue::new_local(None);
    let recording = RwSignal::new(false);
    let toggle = move |_| {
        if let Some(r) = recorder.get_value() {
            let _ = r.stop();
            return;
        }
        spawn_local(async move {
            match record(state, engine, recording).await {
                Ok(r) => recorder.set_value(Some(r)),
                Err(e) => state.fail(Failure::Media, format!("microphone: {e}")),
            }
        });
    };
    Effect::new(move |_| {
        if !recording.get() {
            recorder.set_value(None);
        }
    });
    view! {
        <button type="button" data-testid="record" on:click=toggle aria-pressed=move || recording.get().to_string()>
            {move || if recording.get() { "Stop recording" } else { "Record from the microphone" }}
        </button>
    }
}

/// Starts recording; when it stops, the recording is attached as music.
async fn record(state: State, engine: Engine, recording: RwSignal<bool>) -> Result<web_sys::MediaRecorder, String> {
    use wasm_bindgen_futures::JsFuture;
    let js = |e: wasm_bindgen::JsValue| m2ugen_weights::web::js_message(&e);
    let devices = web_sys::window().ok_or("no window")?.navigator().media_devices().map_err(js)?;
    let constraints = web_sys::MediaStreamConstraints::new();
    constraints.set_audio(&true.into());
    let stream: web_sys::MediaStream = JsFuture::from(devices.get_user_media_with_constraints(&constraints).map_err(js)?).await.map_err(|e| format!("permission refused or no microphone ({})", js(e)))?.unchecked_into();
    let recorder = web_sys::MediaRecorder::new_with_media_stream(&stream).map_err(js)?;
    let chunks = std::rc::Rc::new(std::cell::RefCell::new(Vec::<web_sys::Blob>::new()));
    let on_data = {
        let chunks = chunks.clone();
        wasm_bindgen::closure::Closure::<dyn FnMut(web_sys::BlobEvent)>::new(move |e: web_sys::BlobEvent| {
            if let Some(b) = e.data() {
                chunks.borrow_mut().push(b);
            }
        })
    };
    recorder.set_ondataavailable(Some(on_data.as_ref().unchecked_ref()));
    on_data.forget();
    let on_stop = wasm_bindgen::closure::Closure::<dyn FnMut()>::new(move || {
        recording.set(false);
        for track in stream.get_tracks().iter() {
            if let Ok(t) = track.dyn_into::<web_sys::MediaStreamTrack>() {
                t.stop();
            }
        }
        let parts = js_sys::Array::new();
        for b in chunks.borrow().iter() {
            parts.push(b);
        }
        let options = web_sys::FilePropertyBag::new();
        options.set_type("audio/webm");
        match web_sys::File::new_with_blob_sequence_and_options(&parts, "recording.webm", &options) {
            Ok(file) => attach_file(state, engine, file),
            Err(e) => state.fail(Failure::Media, format!("recording: {}", m2ugen_weights::web::js_message(&e))),
        }
    });
    recorder.set_onstop(Some(on_stop.as_ref().unchecked_ref()));
    on_stop.forget();
    recorder.start().map_err(js)?;
    recording.set(true);
    Ok(recorder)
}

const SETTINGS_KEY: &str = "m2ugen.music-settings";

/// The decoder the form makes music with: the one chosen when the model has it, else the
/// model's default (its first).
fn chosen_decoder(decoders: &[DecoderInfo], chosen: &str) -> Option<DecoderInfo> {
    decoders.iter().find(|d| d.name == chosen).or(decoders.first()).cloned()
}

/// Making music: the request, the decoder (when the model has two), its settings, progress
/// and the stop button.
#[component]
fn MusicPanel(engine: Engine) -> impl IntoView {
    use gloo_storage::Storage;
    let state = expect_context::<State>();
    let saved: MusicForm = gloo_storage::LocalStorage::get(SETTINGS_KEY).unwrap_or_default();
    let prompt = RwSignal::new(String::new());
    let seconds = RwSignal::new(saved.seconds);
    let seed = RwSignal::new(saved.seed);
    let guidance = RwSignal::new(saved.guidance);
    let mode = RwSignal::new(saved.mode);
    let decoder_name = RwSignal::new(saved.decoder);
    let steps = RwSignal::new(saved.steps);
    let negative = RwSignal::new(saved.negative);
    let decoders = move || state.model.get().map(|m| m.decoders).unwrap_or_default();
    // Another decoder: the guidance follows its default unless the person set another value.
    let switch_decoder = move |name: String| {
        use m2ugen_pipeline::studio::Decoder;
        if let (Ok(from), Ok(to)) = (decoder_name.get_untracked().parse::<Decoder>().or_else(|_| "musicgen".parse()), name.parse::<Decoder>()) {
            if guidance.get_untracked().trim().parse::<f32>().ok() == Some(from.default_guidance()) {
                guidance.set(to.default_guidance().to_string());
            }
        }
        decoder_name.set(name);
    };
    let decoder = move || chosen_decoder(&decoders(), &decoder_name.get());
    let diffusion = move || decoder().is_some_and(|d| d.name == "audioldm2");
    let generate = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(d) = chosen_decoder(&state.model.get_untracked().map(|m| m.decoders).unwrap_or_default(), &decoder_name.get_untracked()) else {
            return state.fail(Failure::Input, "this model makes no music: load one with a music decoder");
        };
        let chosen_mode = mode.get_untracked();
        let form = MusicForm {
            seconds: seconds.get_untracked(),
            seed: seed.get_untracked(),
            guidance: guidance.get_untracked(),
            mode: if d.modes.contains(&chosen_mode) { chosen_mode.clone() } else { String::new() },
            decoder: d.name.clone(),
            steps: steps.get_untracked(),
            negative: negative.get_untracked(),
        };
        match music_request(&prompt.get_untracked(), &form, &state.answer_tokens.get_untracked()) {
            Ok(request) => {
                // Settings are a convenience: a browser that refuses storage still makes music.
                let _ = gloo_storage::LocalStorage::set(SETTINGS_KEY, &MusicForm { mode: chosen_mode, ..form });
                let job = state.next();
                state.error.set(None);
                state.caption.set(String::new());
                state.busy.set(Some(Busy::Making(job, 0, 1, if d.name == "audioldm2" { Unit::Steps } else { Unit::Frames })));
                send(engine, ToEngine::Generate { job, request });
            }
            Err(e) => state.fail(Failure::Input, e),
        }
    };
    let busy = move || state.busy.get().is_some();
    let shown = move || state.model.get().is_some_and(|m| m.music);
    let modes = move || decoder().map(|d| d.modes).unwrap_or_default();
    view! {
        <Show when=shown>
            <section aria-labelledby="music-heading">
                <h2 id="music-heading">"Make music"</h2>
                <p class="hint">{move || if state.attachment.get().is_some() { "The request is about the attachment: to edit a clip, attach it and say what to change." } else { "Describe the music, or attach a clip, an image or a video for the music to fit." }}</p>
                <form on:submit=generate class="music">
                    <label for="music-prompt">"What music to make"</label>
                    <textarea id="music-prompt" data-testid="music-prompt" rows="2" bind:value=prompt maxlength="2000"></textarea>
                    <div class="settings">
                        <Show when=move || { decoders().len() > 1 }>
                            <div>
                                <label for="decoder">"Decoder"</label>
                                <select id="decoder" data-testid="decoder" on:change=move |ev| switch_decoder(event_target_value(&ev)) prop:value=move || decoder().map(|d| d.name).unwrap_or_default()>
                                    {move || decoders().into_iter().map(|d| view! { <option value=d.name.clone()>{d.title.clone()}</option> }).collect_view()}
                                </select>
                            </div>
                        </Show>
                        <div>
                            <label for="seconds">{move || if diffusion() { "Length (seconds, at most 60)" } else { "Length (seconds)" }}</label>
                            <input id="seconds" data-testid="seconds" type="number" min="0.1" max="120" step="0.1" bind:value=seconds />
                        </div>
                        <div>
                            <label for="seed">"Seed"</label>
                            <input id="seed" data-testid="seed" type="number" min="0" step="1" bind:value=seed />
                        </div>
                        <div>
                            <label for="guidance">{move || if diffusion() { "Guidance (1: off; AudioLDM 2's default 3.5)" } else { "Guidance (1: off; MusicGen's default 3)" }}</label>
                            <input id="guidance" data-testid="guidance" type="number" min="0" step="0.5" bind:value=guidance />
                        </div>
                        <div>
                            <label for="mode">"Conditioning"</label>
                            <select id="mode" data-testid="mode" bind:value=mode>
                                <option value="">"The model's default"</option>
                                {move || modes().into_iter().map(|m| view! { <option value=m.clone()>{m.clone()}</option> }).collect_view()}
                            </select>
                        </div>
                        <Show when=diffusion>
                            <div>
                                <label for="steps">"Denoising steps (the reference uses 200)"</label>
                                <input id="steps" data-testid="steps" type="number" min="1" max="1000" step="1" bind:value=steps />
                            </div>
                            <div>
                                <label for="negative">"Negative prompt"</label>
                                <input id="negative" data-testid="negative" type="text" maxlength="2000" bind:value=negative />
                            </div>
                        </Show>
                    </div>
                    <button type="submit" data-testid="generate" disabled=busy>"Make music"</button>
                    <button type="button" data-testid="stop-music" aria-label="Stop making music" on:click=move |_| send(engine, ToEngine::Stop) disabled=move || !matches!(state.busy.get(), Some(Busy::Making(..)))>"Stop"</button>
                </form>
                {move || match state.busy.get() {
                    Some(Busy::Making(_, done, total, unit)) => Some(view! {
                        <label for="music-progress">"Making music"</label>
                        <progress id="music-progress" data-testid="music-progress" max=total.to_string() value=done.to_string()></progress>
                        <span data-testid="music-progress-text">{match unit {
                            Unit::Frames => format!(" {:.1} of {:.1} s", done as f64 / 50.0, total as f64 / 50.0),
                            Unit::Steps => format!(" denoising step {done} of {total}"),
                        }}</span>
                    }),
                    _ => None,
                }}
                <p class="caption" data-testid="caption">{move || { let c = state.caption.get(); (!c.is_empty()).then(|| format!("The model's description: {c}")) }}</p>
            </section>
        </Show>
    }
}

/// Tracks made or opened: player, waveform, details, download and share link.
#[component]
fn TrackList() -> impl IntoView {
    let state = expect_context::<State>();
    view! {
        <section aria-labelledby="tracks-heading" class="tracks">
            <h2 id="tracks-heading">"Tracks"</h2>
            <Show when=move || matches!(state.busy.get(), Some(Busy::Opening(_)))>
                <p data-testid="opening">"Opening the shared track (a MusicGen track needs only EnCodec's weights; an AudioLDM 2 track is made again from its recipe, on this GPU)…"</p>
            </Show>
            {move || match state.busy.get() {
                Some(Busy::Opening(Some((done, total)))) => Some(view! {
                    <label for="opening-progress">"Making the shared track again"</label>
                    <progress id="opening-progress" data-testid="opening-progress" max=total.to_string() value=done.to_string()></progress>
                    <span>{format!(" denoising step {done} of {total}")}</span>
                }),
                _ => None,
            }}
            <ol>
                {move || state.tracks.get().into_iter().map(|t| view! { <Track track=t /> }).collect_view()}
            </ol>
        </section>
    }
}

/// One track.
#[component]
fn Track(track: TrackView) -> impl IntoView {
    let share = track.info.share.clone();
    let link = share.as_ref().ok().map(|fragment| {
        let base = web_sys::window().and_then(|w| w.location().href().ok()).unwrap_or_default();
        format!("{}{fragment}", base.split('#').next().unwrap_or(""))
    });
    let copied = RwSignal::new(false);
    let copy = {
        let link = link.clone();
        move |_| {
            if let (Some(link), Some(window)) = (link.clone(), web_sys::window()) {
                let _ = window.navigator().clipboard().write_text(&link);
                copied.set(true);
            }
        }
    };
    let title = match track.number {
        None => format!("Shared track ({})", track.info.decoder),
        Some(n) => format!("Track {n} ({}, {} mode, seed {})", track.info.decoder, track.info.mode, track.info.seed),
    };
    let carries = if share.as_ref().is_ok_and(|f| f.starts_with(m2ugen_pipeline::share::RECIPE_PREFIX)) { "it carries the recipe: opening it makes the track again on the opener's GPU" } else { "it carries the track itself" };
    let file_name = match track.number {
        Some(n) => format!("m2ugen-track{n}-seed{}.wav", track.info.seed),
        None => format!("m2ugen-shared-seed{}.wav", track.info.seed),
    };
    view! {
        <li class="track" data-testid="track" data-samples-sha256=track.samples_sha256.clone()>
            <h3>{title}</h3>
            <p class="prompt">"“" {track.info.prompt.clone()} "”"</p>
            <audio controls=true src=track.url.clone() data-testid="player"></audio>
            <svg class="waveform" viewBox="0 0 600 80" preserveAspectRatio="none" role="img" aria-label=format!("Waveform of {}", format_duration(track.seconds))>
                <path d=track.path.clone()></path>
            </svg>
            <p>{format_duration(track.seconds)} {track.info.stopped.then_some(" (stopped early)")} " · "
                <a href=track.url.clone() download=file_name data-testid="download">"Download WAV"</a>
            </p>
            {match link {
                Some(link) => view! {
                    <label for=format!("share-{}", track.info.job)>{format!("Share link ({} characters; {carries}, no server involved)", link.len())}</label>
                    <input id=format!("share-{}", track.info.job) data-testid="share-link" type="text" readonly=true value=link />
                    <button type="button" on:click=copy>{move || if copied.get() { "Copied" } else { "Copy link" }}</button>
                }.into_any(),
                None => view! { <p>"Not shareable: " {share.err().unwrap_or_default()}</p> }.into_any(),
            }}
        </li>
    }
}
