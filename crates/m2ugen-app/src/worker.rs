//! Where the engine runs, and how the page talks to it.
//!
//! **In a worker** (the default): `web/worker.js` starts a dedicated module Web Worker on the
//! page's own wasm; `main` sees no window there and calls [`run_worker`]. The page and the
//! worker exchange [`Envelope`]s: the message serialised with `serde-wasm-bindgen`, its
//! samples beside it as a `Float32Array` whose buffer is transferred (moved, not copied).
//!
//! **On the page's thread** (the fallback): where the worker finds no WebGPU (a browser that
//! offers it to pages only), the page runs the same [`Engine`] itself; every GPU wait is an
//! `await`, so the page stays responsive between steps, and the page says where it runs.
//!
//! Either way, requests are handled one at a time in order, except stop and lose-device, which
//! act at once ([`Controls`]).

use crate::engine::{Controls, Engine};
use crate::protocol::{Envelope, FromEngine, ToEngine};
use futures_channel::mpsc;
use futures_util::StreamExt;
use js_sys::{Array, Float32Array, Object, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// An envelope as a JS object `{msg, data?}` and the buffers to transfer with it.
fn encode<T: serde::Serialize>(env: &Envelope<T>) -> Result<(JsValue, Array), String> {
    let object = Object::new();
    let msg = serde_wasm_bindgen::to_value(&env.msg).map_err(|e| format!("message cannot be encoded: {e}"))?;
    Reflect::set(&object, &"msg".into(), &msg).map_err(|e| m2ugen_weights::web::js_message(&e))?;
    let transfer = Array::new();
    if let Some(data) = &env.data {
        let array = Float32Array::from(data.as_slice());
        transfer.push(&array.buffer());
        Reflect::set(&object, &"data".into(), &array).map_err(|e| m2ugen_weights::web::js_message(&e))?;
    }
    Ok((object.into(), transfer))
}

/// An envelope from a message's data; a malformed one is an error saying so.
fn decode<T: serde::de::DeserializeOwned>(value: &JsValue) -> Result<Envelope<T>, String> {
    let msg = Reflect::get(value, &"msg".into()).map_err(|e| m2ugen_weights::web::js_message(&e))?;
    let msg = serde_wasm_bindgen::from_value(msg).map_err(|e| format!("malformed message: {e}"))?;
    let data = Reflect::get(value, &"data".into()).ok().and_then(|d| d.dyn_into::<Float32Array>().ok()).map(|a| a.to_vec());
    Ok(Envelope { msg, data })
}

/// Runs the engine on requests from `rx`; replies go to `reply`.
async fn serve(mut rx: mpsc::UnboundedReceiver<Envelope<ToEngine>>, controls: Controls, in_worker: bool, mut reply: impl FnMut(Envelope<FromEngine>)) {
    let cache: Option<Box<dyn m2ugen_weights::loader::TensorCache>> = match m2ugen_weights::web::WebCache::open().await {
        Ok(c) => Some(Box::new(c)),
        Err(e) => {
            reply(Envelope::bare(FromEngine::Notice(format!("Weights will not be kept for the next visit: {e}"))));
            None
        }
    };
    let mut engine = Engine::new(m2ugen_weights::web::WebFetcher::new, cache, in_worker, controls);
    while let Some(env) = rx.next().await {
        engine.handle(env, &mut reply).await;
    }
}

/// A sender of requests that applies stop and lose-device at once.
fn sender(controls: Controls, tx: mpsc::UnboundedSender<Envelope<ToEngine>>) -> impl Fn(Envelope<ToEngine>) {
    move |env: Envelope<ToEngine>| match env.msg {
        ToEngine::Stop => controls.stop(),
        ToEngine::LoseDevice => controls.lose_device(),
        _ => {
            let _ = tx.unbounded_send(env);
        }
    }
}

/// The worker's side: takes envelopes from the page, runs the engine, posts replies.
pub fn run_worker() {
    let scope: web_sys::DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let controls = Controls::default();
    let (tx, rx) = mpsc::unbounded();
    let send = sender(controls.clone(), tx);
    let post = {
        let scope = scope.clone();
        move |env: Envelope<FromEngine>| match encode(&env) {
            Ok((value, transfer)) => {
                let _ = scope.post_message_with_transfer(&value, &transfer);
            }
            Err(e) => {
                let failed = FromEngine::Failed { job: None, failure: crate::protocol::Failure::Other, message: e };
                if let Ok((value, _)) = encode(&Envelope::bare(failed)) {
                    let _ = scope.post_message(&value);
                }
            }
        }
    };
    let on_message = {
        let post = post.clone();
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| match decode::<ToEngine>(&event.data()) {
            Ok(env) => send(env),
            Err(e) => post(Envelope::bare(FromEngine::Failed { job: None, failure: crate::protocol::Failure::Other, message: e })),
        })
    };
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The worker lives as long as the page: so does its handler.
    on_message.forget();
    post(Envelope::bare(FromEngine::Ready));
    wasm_bindgen_futures::spawn_local(serve(rx, controls, true, post));
}

/// The page's handle on the engine, wherever it runs.
#[derive(Clone)]
pub struct EngineHandle {
    send: std::rc::Rc<dyn Fn(Envelope<ToEngine>)>,
    worker: Option<web_sys::Worker>,
}

impl EngineHandle {
    /// Sends a request.
    pub fn send(&self, env: Envelope<ToEngine>) {
        (self.send)(env)
    }

    /// Whether the engine runs in a worker.
    pub fn in_worker(&self) -> bool {
        self.worker.is_some()
    }

    /// Stops the worker (before falling back to the page's thread).
    pub fn terminate(&self) {
        if let Some(w) = &self.worker {
            w.terminate();
        }
    }

    /// Starts the engine in a module worker (`worker.js`, given the page's wasm-bindgen script
    /// and wasm); replies go to `on_reply`, and a worker that fails to start reports a failure.
    /// `hide_gpu` (for the end-to-end run) makes the worker a browser's that offers WebGPU to
    /// pages only.
    pub fn in_worker_thread(js: &str, wasm: &str, hide_gpu: bool, on_reply: impl Fn(Envelope<FromEngine>) + 'static) -> Result<EngineHandle, String> {
        let options = web_sys::WorkerOptions::new();
        options.set_type(web_sys::WorkerType::Module);
        let url = format!("worker.js?js={}&wasm={}{}", js_sys::encode_uri_component(js), js_sys::encode_uri_component(wasm), if hide_gpu { "&no-gpu" } else { "" });
        let worker = web_sys::Worker::new_with_options(&url, &options).map_err(|e| m2ugen_weights::web::js_message(&e))?;
        let on_reply = std::rc::Rc::new(on_reply);
        let on_message = {
            let on_reply = on_reply.clone();
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| match decode::<FromEngine>(&event.data()) {
                Ok(env) => on_reply(env),
                Err(e) => on_reply(Envelope::bare(FromEngine::Failed { job: None, failure: crate::protocol::Failure::Other, message: e })),
            })
        };
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();
        let on_error = {
            let on_reply = on_reply.clone();
            Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |event: web_sys::ErrorEvent| {
                on_reply(Envelope::bare(FromEngine::Failed { job: None, failure: crate::protocol::Failure::Other, message: format!("the engine's worker stopped ({}): reload the page", event.message()) }));
            })
        };
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        on_error.forget();
        let target = worker.clone();
        let send = move |env: Envelope<ToEngine>| {
            let posted = encode(&env).and_then(|(value, transfer)| target.post_message_with_transfer(&value, &transfer).map_err(|e| m2ugen_weights::web::js_message(&e)));
            if let Err(e) = posted {
                on_reply(Envelope::bare(FromEngine::Failed { job: None, failure: crate::protocol::Failure::Other, message: format!("the request could not reach the engine: {e}") }));
            }
        };
        Ok(EngineHandle { send: std::rc::Rc::new(send), worker: Some(worker) })
    }

    /// Runs the engine on the page's thread; replies go to `on_reply`.
    pub fn on_page_thread(on_reply: impl Fn(Envelope<FromEngine>) + 'static) -> EngineHandle {
        let controls = Controls::default();
        let (tx, rx) = mpsc::unbounded();
        let send = sender(controls.clone(), tx);
        wasm_bindgen_futures::spawn_local(serve(rx, controls, false, on_reply));
        EngineHandle { send: std::rc::Rc::new(send), worker: None }
    }
}
