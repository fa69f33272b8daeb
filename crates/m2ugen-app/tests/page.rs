//! The page's components in headless Chromium.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used)]

use leptos::prelude::*;
use m2ugen_app::{AdapterStatus, App, GpuStatus};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// A fresh element in the document to mount a component into.
fn mount_fresh() -> web_sys::HtmlElement {
    use leptos::wasm_bindgen::JsCast;
    let document = web_sys::window().unwrap().document().unwrap();
    let root = document.create_element("div").unwrap();
    document.body().unwrap().append_child(&root).unwrap();
    root.dyn_into().unwrap()
}

#[wasm_bindgen_test]
async fn the_page_shows_the_adapter_it_got() {
    let root = mount_fresh();
    let _handle = mount_to(root.clone(), App);
    for _ in 0..200 {
        if root.query_selector("[data-testid=adapter]").unwrap().is_some() {
            break;
        }
        gloo_timers::future::TimeoutFuture::new(50).await;
    }
    let text = root.query_selector("[data-testid=adapter]").unwrap().expect("the adapter line appears").text_content().unwrap();
    assert!(text.starts_with("GPU: ") && text.contains("max binding"), "{text}");
}

#[wasm_bindgen_test]
async fn an_error_is_shown_as_text_not_html() {
    let root = mount_fresh();
    let (status, set_status) = signal(GpuStatus::Pending);
    let _handle = mount_to(root.clone(), move || view! { <AdapterStatus status=status /> });
    set_status.set(GpuStatus::Failed("<img src=x onerror=alert(1)> no WebGPU".into()));
    leptos::task::tick().await;
    let alert = root.query_selector("[role=alert]").unwrap().expect("the error is shown");
    assert_eq!(alert.text_content().unwrap(), "<img src=x onerror=alert(1)> no WebGPU");
    assert!(root.query_selector("img").unwrap().is_none(), "user-visible text must never become markup");
}
