//! The m2ugen-web page (Leptos, client-side rendered, built by trunk).
//!
//! For now the page finds the user's GPU and says what it got, or why there is none, in words
//! the user can act on. The model UI arrives with the pipeline work.
//!
//! User-visible text is always inserted as text nodes (never as HTML).

pub mod media;

use leptos::prelude::*;
use leptos::task::spawn_local;

/// What the page knows of the GPU.
#[derive(Clone, Debug, PartialEq)]
pub enum GpuStatus {
    /// Still asking the browser.
    Pending,
    /// A device was created: its one-line description.
    Ready(String),
    /// No usable device: the runtime's message.
    Failed(String),
}

/// The whole page.
#[component]
pub fn App() -> impl IntoView {
    let (status, set_status) = signal(GpuStatus::Pending);
    spawn_local(async move {
        let result = m2ugen_gpu::Gpu::new(Default::default()).await;
        set_status.set(match result {
            Ok(gpu) => GpuStatus::Ready(gpu.describe()),
            Err(e) => GpuStatus::Failed(e.to_string()),
        });
    });
    view! {
        <main>
            <h1>"m2ugen-web"</h1>
            <p class="tagline">"Music understanding and generation, on your GPU, in this tab."</p>
            <AdapterStatus status=status />
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
