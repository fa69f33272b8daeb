//! The m2ugen-web page (Leptos, client-side rendered, built by trunk).
//!
//! - [`ui`]: the components (model, chat, music, tracks, failures) and the state they share;
//! - [`protocol`]: the one message type between the page and the engine;
//! - [`engine`]: the GPU device, the model, the conversation and music making;
//! - [`worker`]: where the engine runs (a module Web Worker, or the page's thread) and the
//!   messages' way there and back;
//! - [`media`]: uploads decoded by the browser into what the encoders take;
//! - [`forms`]: the model URL, music requests and uploads, checked;
//! - [`display`]: waveforms, sizes, rates and times in words.
//!
//! User-visible text is always inserted as text nodes (never as HTML).

pub mod display;
pub mod engine;
pub mod forms;
pub mod media;
pub mod protocol;
#[cfg(target_arch = "wasm32")]
pub mod ui;
#[cfg(target_arch = "wasm32")]
pub mod worker;

#[cfg(target_arch = "wasm32")]
pub use ui::{AdapterStatus, App};

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
