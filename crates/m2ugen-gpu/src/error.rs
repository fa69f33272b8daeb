/// Errors of the GPU runtime. Each names the thing at fault and what would fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The browser has no `navigator.gpu`.
    #[error("this browser does not offer WebGPU (no navigator.gpu): use a recent Chrome, Edge or Safari, or Firefox with WebGPU enabled")]
    NoWebGpu,
    /// No adapter could be found.
    #[error("no GPU adapter was found: {hint} (details: {detail})")]
    NoAdapter {
        /// What wgpu said.
        detail: String,
        /// What to do about it on this platform.
        hint: &'static str,
    },
    /// The adapter lacks a feature that was required.
    #[error("the GPU adapter '{adapter}' lacks the '{feature}' feature")]
    MissingFeature {
        /// The adapter's name.
        adapter: String,
        /// The feature, in WebGPU spelling.
        feature: &'static str,
    },
    /// A device limit is below what the kernels need.
    #[error("the GPU's {limit} is {have}, below the {need} needed")]
    LimitTooSmall {
        /// The limit, in WebGPU spelling.
        limit: &'static str,
        /// What the adapter offers.
        have: u64,
        /// What is needed.
        need: u64,
    },
    /// The device could not be created.
    #[error("the GPU device could not be created: {0}")]
    RequestDevice(String),
    /// The device was lost (driver reset, GPU process crash, tab in the background too long).
    #[error("the GPU device was lost ({0}); reload to start again")]
    DeviceLost(String),
    /// The GPU reported an error (validation or out of memory) while running `what`.
    #[error("the GPU reported an error during {what}: {message}")]
    Gpu {
        /// What was being done.
        what: String,
        /// The driver's message.
        message: String,
    },
    /// Reading a buffer back failed.
    #[error("reading '{what}' back from the GPU failed: {message}")]
    Readback {
        /// The tensor.
        what: String,
        /// Why.
        message: String,
    },
    /// Inputs of an op do not fit together.
    #[error("{op}: {what} has shape {got:?}, expected {expected}")]
    Shape {
        /// The op.
        op: &'static str,
        /// Which input.
        what: &'static str,
        /// What was expected, in words.
        expected: String,
        /// The shape given.
        got: Vec<usize>,
    },
    /// An op got a tensor of the wrong element type.
    #[error("{op}: {what} is {got}, expected {expected}")]
    DType {
        /// The op.
        op: &'static str,
        /// Which input.
        what: &'static str,
        /// What was expected.
        expected: &'static str,
        /// What was given.
        got: m2ugen_core::DType,
    },
    /// A setting of an op is out of its range.
    #[error("{op}: {setting} = {value} is out of range ({range})")]
    Setting {
        /// The op.
        op: &'static str,
        /// The setting.
        setting: &'static str,
        /// Its value, as given.
        value: String,
        /// The allowed range.
        range: &'static str,
    },
    /// A tensor that must sit in one binding is split across several.
    #[error("{op}: {what} ({bytes} bytes) is larger than one storage binding ({limit} bytes)")]
    TooLargeForBinding {
        /// The op.
        op: &'static str,
        /// Which input.
        what: &'static str,
        /// Its size.
        bytes: u64,
        /// The binding limit.
        limit: u64,
    },
    /// An error of the core crate (shapes, splitting).
    #[error(transparent)]
    Core(#[from] m2ugen_core::Error),
}

/// Result with the GPU [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
