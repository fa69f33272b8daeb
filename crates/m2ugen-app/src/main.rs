//! Entry point of the page's wasm. In the page: panic hook, then mount the app. In the engine's
//! worker (`web/worker.js` loads this same wasm; there is no window there): run the engine.
#[cfg(target_arch = "wasm32")]
fn main() {
    console_error_panic_hook::set_once();
    if web_sys::window().is_some() {
        leptos::mount::mount_to_body(m2ugen_app::App);
    } else {
        m2ugen_app::worker::run_worker();
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("m2ugen-app is the web page: build and serve it with scripts/serve.sh (trunk); the native tools are the `m2ugen` command");
    std::process::exit(2);
}
