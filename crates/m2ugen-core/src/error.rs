/// Errors of the core crate: each names the thing that is wrong.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// A buffer's length does not match the shape it was given with.
    #[error("{what}: expected {expected} elements, got {got}")]
    Length {
        /// What the buffer is.
        what: String,
        /// Elements the shape implies.
        expected: usize,
        /// Elements supplied.
        got: usize,
    },
    /// A stored configuration is unusable: the field and what is wrong with it.
    #[error("config: {field}: {problem}")]
    Config {
        /// The field, with its component (`musicgen.decoder.hidden_size`).
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// One row of a tensor is larger than the largest binding the device allows.
    #[error("{what}: one row is {row_bytes} bytes, larger than the {limit}-byte storage binding limit")]
    RowTooLarge {
        /// What the tensor is.
        what: String,
        /// Bytes of one row.
        row_bytes: u64,
        /// The binding limit.
        limit: u64,
    },
}

/// Result with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
