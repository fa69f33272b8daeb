// Loads the app's wasm. Trunk names the hashed files in this tag's data attributes
// (trunk.toml, pattern_script), so the page needs no inline script under its CSP.
const tag = document.querySelector("script[data-js][data-wasm]");
const bindings = await import(tag.dataset.js);
await bindings.default({ module_or_path: tag.dataset.wasm });
