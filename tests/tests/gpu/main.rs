//! GPU suites: kernels against their CPU twins, and the runtime's behaviour (splitting, errors).
//! Native: `cargo test -p m2ugen-tests`; browser: the same with `--target wasm32-unknown-unknown`.
#![allow(clippy::unwrap_used)]

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod attention;
mod conv;
mod conv2d;
mod copy;
mod kernels;
mod layers;
mod runtime;
mod sample;
