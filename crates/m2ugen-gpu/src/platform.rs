//! Everything that differs between the browser and native targets, in one place.

use crate::{Error, Result};

/// What to do when no adapter is found.
#[cfg(web)]
pub const NO_ADAPTER_HINT: &str = "WebGPU may be disabled or blocked for this GPU: check chrome://gpu (or your browser's equivalent), update the GPU driver, or try another browser";
/// What to do when no adapter is found.
#[cfg(native)]
pub const NO_ADAPTER_HINT: &str = "install a Vulkan, Metal or DX12 driver (on Linux without a GPU, Mesa's lavapipe: apt-get install mesa-vulkan-drivers)";

/// The backends an instance is created with.
pub fn backends() -> wgpu::Backends {
    #[cfg(web)]
    {
        wgpu::Backends::BROWSER_WEBGPU
    }
    #[cfg(native)]
    {
        wgpu::Backends::PRIMARY
    }
}

/// Fails with a clear message where the browser has no WebGPU at all.
pub fn check_webgpu_present() -> Result<()> {
    #[cfg(web)]
    {
        let global = js_sys::global();
        let navigator = js_sys::Reflect::get(&global, &"navigator".into()).unwrap_or(wasm_bindgen::JsValue::UNDEFINED);
        let gpu = if navigator.is_undefined() {
            wasm_bindgen::JsValue::UNDEFINED
        } else {
            js_sys::Reflect::get(&navigator, &"gpu".into()).unwrap_or(wasm_bindgen::JsValue::UNDEFINED)
        };
        if gpu.is_undefined() || gpu.is_null() {
            return Err(Error::NoWebGpu);
        }
    }
    Ok(())
}

/// Waits for every submitted command and map callback: natively by polling the device, in the
/// browser by yielding to the event loop until `done` resolves.
pub async fn wait<T>(device: &wgpu::Device, done: futures_channel::oneshot::Receiver<T>, what: &str) -> Result<T> {
    #[cfg(native)]
    {
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu { what: what.to_string(), message: e.to_string() })?;
    }
    #[cfg(web)]
    let _ = device;
    done.await.map_err(|_| Error::Readback { what: what.to_string(), message: "the map callback never ran".into() })
}

/// Runs pending device callbacks without blocking (natively; the browser runs them itself).
/// Waits `ms` milliseconds, letting the browser run its tasks (the device-lost promise among
/// them); natively the device's callbacks run on poll, so there is nothing to wait for: `false`.
pub async fn pause_ms(ms: i32) -> bool {
    #[cfg(native)]
    {
        let _ = ms;
        false
    }
    #[cfg(web)]
    {
        let promise = js_sys::Promise::new(&mut |resolve, _| {
            let set_timeout = js_sys::Reflect::get(&js_sys::global(), &"setTimeout".into()).ok().and_then(|f| wasm_bindgen::JsCast::dyn_into::<js_sys::Function>(f).ok());
            match set_timeout {
                Some(f) => {
                    let _ = f.call2(&wasm_bindgen::JsValue::UNDEFINED, &resolve, &ms.into());
                }
                None => {
                    let _ = resolve.call0(&wasm_bindgen::JsValue::UNDEFINED);
                }
            }
        });
        wasm_bindgen_futures::JsFuture::from(promise).await.is_ok()
    }
}

pub fn poll(device: &wgpu::Device) {
    #[cfg(native)]
    let _ = device.poll(wgpu::PollType::Poll);
    #[cfg(web)]
    let _ = device;
}

/// Milliseconds from a monotonic clock, for benchmarks.
pub fn now_ms() -> f64 {
    #[cfg(native)]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
    }
    #[cfg(web)]
    {
        // The page's or the worker's clock (a worker has no window).
        use wasm_bindgen::JsCast;
        js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok().and_then(|p| p.dyn_into::<web_sys::Performance>().ok()).map_or(0.0, |p| p.now())
    }
}
