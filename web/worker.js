// The engine's worker: a dedicated module worker running the page's own wasm. Its `main` finds
// no window here and runs the engine (crates/m2ugen-app/src/worker.rs), which posts `Ready`.
// The page passes its wasm-bindgen script and wasm (hashed names) in this script's query.
const query = new URL(self.location.href).searchParams;
const js = query.get("js");
const wasm = query.get("wasm");
// Only this site's own files: the page built these names, nothing else may be loaded here.
const same = (u) => new URL(u, self.location.href).origin === self.location.origin;
if (!js || !wasm || !same(js) || !same(wasm)) {
  throw new Error("worker.js needs ?js=&wasm= naming this site's own scripts");
}
// The end-to-end run's stand-in for a browser that offers WebGPU to pages but not to workers.
if (query.has("no-gpu")) Object.defineProperty(self.navigator, "gpu", { value: undefined });
const bindings = await import(new URL(js, self.location.href).href);
await bindings.default({ module_or_path: new URL(wasm, self.location.href).href });
