// End-to-end run of the built page (dist/, with its bundled model at dist/model/) in headless
// Chromium, every scenario in a fresh browser profile:
//   main flow: load the model, attach a clip, ask and get a streamed answer, make a track and
//     play it, edit the clip by instruction, lose the GPU device mid-generation and recover,
//     a 360-pixel-wide screen, keyboard focus, an axe-core audit (no serious or critical
//     violation), the longest main-thread task while music is made;
//   share link: the track's link opened in a fresh profile gives the same samples, fetching
//     EnCodec only; a malformed link; a file that cannot be decoded; no WebGPU; a download
//     that breaks off; storage that is full.
// Every request the page makes is recorded: any origin but the page's fails the run, as does
// any Content-Security-Policy violation or page error.
// Usage: node tests/e2e/page.mjs DIST_DIR [SCREENSHOT_DIR]   (M2UGEN_TOOLS must hold puppeteer-core
// and axe-core; E2E_ONLY=part runs only the scenarios whose name holds it)
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.join(process.env.M2UGEN_TOOLS ?? ".", "node_modules", "x.js"));
const puppeteer = require("puppeteer-core");
const axeSource = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const dist = path.resolve(process.argv[2] ?? "dist");
const shots = process.argv[3];
if (shots) fs.mkdirSync(shots, { recursive: true });
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css", ".json": "application/json" };
const timeout = 600000;

// The page's server. /cut-model/ is the bundled model whose shards break off half-way, every time.
const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  let pathname = decodeURIComponent(url.pathname);
  const cut = pathname.startsWith("/cut-model/");
  if (cut) pathname = pathname.replace("/cut-model/", "/model/");
  const file = path.join(dist, pathname === "/" ? "index.html" : pathname);
  if (!file.startsWith(dist) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
    res.writeHead(404).end("not found");
    return;
  }
  const type = types[path.extname(file)] ?? "application/octet-stream";
  const size = fs.statSync(file).size;
  const range = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? "");
  const [start, end] = range ? [Number(range[1]), Math.min(Number(range[2]), size - 1)] : [0, size - 1];
  const headers = { "content-type": type, "accept-ranges": "bytes", "content-length": String(end - start + 1) };
  if (range) headers["content-range"] = `bytes ${start}-${end}/${size}`;
  res.writeHead(range ? 206 : 200, headers);
  if (cut && /shard-/.test(pathname)) {
    // Half the bytes, then the connection drops.
    const half = start + Math.floor((end - start + 1) / 2);
    fs.createReadStream(file, { start, end: Math.max(start, half - 1) }).on("end", () => res.destroy()).pipe(res, { end: false });
    return;
  }
  fs.createReadStream(file, { start, end }).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const base = `http://127.0.0.1:${server.address().port}/`;
const origin = new URL(base).origin;

const common = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"];
const webgpu = ["--enable-unsafe-webgpu"];
let passed = 0, failed = 0;
const report = {};

async function scenario(name, extraArgs, body) {
  // E2E_ONLY=part runs only the scenarios whose name holds it.
  if (process.env.E2E_ONLY && !name.includes(process.env.E2E_ONLY)) return;
  const userDataDir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? "/tmp", "m2ugen-e2e-"));
  const browser = await puppeteer.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", pipe: true, userDataDir, protocolTimeout: timeout, args: [...common, ...extraArgs] });
  const problems = [];
  const started = Date.now();
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(timeout);
    page.on("console", (m) => { if (/Content.Security.Policy|Refused to/i.test(m.text())) problems.push(`CSP: ${m.text()}`); });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    // Every request, the worker's included, must stay on the page's origin.
    const watch = (target) => target.on("request", (r) => {
      const u = r.url();
      if (!u.startsWith("blob:") && !u.startsWith("data:") && new URL(u).origin !== origin) problems.push(`request to another origin: ${u}`);
    });
    watch(page);
    const requests = [];
    page.on("request", (r) => requests.push(r.url()));
    await body(page, { problems, requests, browser });
    if (problems.length) throw new Error(problems.join("; "));
    passed++;
    console.log(`ok   ${name} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.message}`);
  } finally {
    await browser.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

const text = (page, sel) => page.$eval(sel, (e) => e.textContent);
const shot = async (page, name) => { if (shots) await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true }); };
// Waits until the element's text matches (or an error is shown), then checks it.
async function expectText(page, sel, re, what) {
  await page.waitForSelector(sel);
  await page.waitForFunction((sel, source, flags) => {
    const e = document.querySelector(sel);
    return (e && new RegExp(source, flags).test(e.textContent)) || document.querySelector("[role=alert][data-testid^=error-]");
  }, {}, sel, re.source, re.flags).catch(() => {});
  const t = await text(page, sel);
  if (!re.test(t)) {
    const alert = await page.$("[role=alert][data-testid^=error-]");
    throw new Error(`${what}: '${t}'${alert ? ` (the page says: ${await text(page, "[role=alert][data-testid^=error-]")})` : ""}`);
  }
  return t;
}

// A 3-second WAV: a chord, 16-bit mono at 24 kHz.
function wav(seconds = 3, rate = 24000) {
  const n = seconds * rate;
  const data = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    const v = 0.3 * Math.sin(2 * Math.PI * 220 * t) + 0.2 * Math.sin(2 * Math.PI * 277 * t) + 0.2 * Math.sin(2 * Math.PI * 330 * t);
    data.writeInt16LE(Math.round(v * 32767), i * 2);
  }
  const h = Buffer.alloc(44);
  h.write("RIFF", 0); h.writeUInt32LE(36 + data.length, 4); h.write("WAVEfmt ", 8); h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20); h.writeUInt16LE(1, 22); h.writeUInt32LE(rate, 24); h.writeUInt32LE(rate * 2, 28);
  h.writeUInt16LE(2, 32); h.writeUInt16LE(16, 34); h.write("data", 36); h.writeUInt32LE(data.length, 40);
  return Buffer.concat([h, data]);
}
const tmp = fs.mkdtempSync(path.join(process.env.TMPDIR ?? "/tmp", "m2ugen-e2e-files-"));
const clip = path.join(tmp, "chord.wav");
fs.writeFileSync(clip, wav());
const broken = path.join(tmp, "broken.wav");
fs.writeFileSync(broken, Buffer.concat([Buffer.from("RIFF\x10\x00\x00\x00WAVEfmt "), Buffer.alloc(64, 7)]));

async function loadModel(page, query = "") {
  await page.goto(base + query, { waitUntil: "load" });
  await page.waitForSelector("[data-testid=adapter]");
  await page.click("[data-testid=load]");
  await page.waitForSelector("[data-testid=model-loaded], [role=alert][data-testid^=error-]");
  if (!(await page.$("[data-testid=model-loaded]"))) throw new Error(`loading failed: ${await text(page, "[role=alert]")}`);
}

// Sets a field as a person's typing would end (one input event).
async function setField(page, testid, value) {
  await page.$eval(`[data-testid=${testid}]`, (e, v) => { e.value = v; e.dispatchEvent(new Event("input", { bubbles: true })); e.dispatchEvent(new Event("change", { bubbles: true })); }, String(value));
}

async function makeTrack(page, prompt, seconds, seed, mode = "") {
  const before = (await page.$$("[data-testid=track]")).length;
  await setField(page, "music-prompt", prompt);
  await setField(page, "seconds", seconds);
  await setField(page, "seed", seed);
  await setField(page, "mode", mode);
  await page.click("[data-testid=generate]");
  await page.waitForFunction((n) => document.querySelectorAll("[data-testid=track]").length > n || document.querySelector("[role=alert][data-testid^=error-]"), {}, before);
  const error = await page.$("[role=alert][data-testid^=error-]");
  if (error) throw new Error(`music (${seconds} s, ${mode}) failed: ${await text(page, "[role=alert][data-testid^=error-] .message")}`);
  return page.$eval("[data-testid=track]", (t) => ({
    sha: t.dataset.samplesSha256,
    link: t.querySelector("[data-testid=share-link]")?.value,
    src: t.querySelector("audio").src,
  }));
}

let shared = null;

await scenario("main-flow", [...webgpu, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"], async (page, { requests }) => {
  await page.evaluateOnNewDocument(() => {
    window.__longest = 0;
    new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration); }).observe({ type: "longtask", buffered: true });
  });
  await loadModel(page, "?test-hooks");
  await expectText(page, "[data-testid=untrained]", /untrained/, "the bundled model says it is untrained");
  // The worker's requests are seen too (the origin check covers them).
  if (!requests.some((u) => /\/model\/shard-/.test(u))) throw new Error(`the model's shard requests were not seen: ${requests.join(", ")}`);
  await expectText(page, "[data-testid=load-progress]", /of .*\(100%\)/, "loading shows bytes of the total");
  await expectText(page, "[data-testid=adapter]", /^GPU: /, "the GPU line");
  const notices = await text(page, "[data-testid=notices]");
  report.engine = notices.includes("page's thread") ? "page thread" : "worker";
  if (report.engine !== "worker") throw new Error(`the engine runs on the page's thread, not in its worker: ${notices}`);
  // SwiftShader has no shader-f16: the page says it computes in f32.
  if (!/no shader-f16: the models compute in f32/.test(notices) && !/shader-f16: yes/.test(await text(page, "[data-testid=adapter]"))) throw new Error(`no f32 fallback notice: ${notices}`);
  await shot(page, "1-loaded");

  // Ask about a clip.
  const input = await page.$("[data-testid=attach]");
  await input.uploadFile(clip);
  await expectText(page, "[data-testid=attachment]", /The model hears chord\.wav/, "the clip is heard");
  // Short answers: the bundled model is untrained, and SwiftShader is slow.
  await setField(page, "answer-tokens", 4);
  await page.type("[data-testid=question]", "What instruments are playing?");
  await page.click("[data-testid=ask]");
  await page.waitForSelector("[data-testid=answer][data-done=true]");
  const answer = await text(page, "[data-testid=answer]");
  if (answer.replace("M2UGen: ", "").length === 0) throw new Error("the answer is empty");
  await shot(page, "2-chat");

  // Music from the microphone (Chromium's fake device: a beep), recorded, decoded and heard.
  await page.click("[data-testid=record]");
  await expectText(page, "[data-testid=record]", /Stop recording/, "recording starts");
  await new Promise((ok) => setTimeout(ok, 1500));
  await page.click("[data-testid=record]");
  await expectText(page, "[data-testid=attachment]", /The model hears recording\.webm/, "the recording is heard");

  // Make a track (text mode: MusicGen from the prompt alone; detach first).
  const detach = await page.$$("xpath/.//button[contains(., 'Remove attachment')]");
  await detach[0].click();
  await expectText(page, "[data-testid=attachment]", /Nothing attached/, "the attachment is removed");
  await page.evaluate(() => { window.__longest = 0; });
  const t1 = await makeTrack(page, "a calm piano piece", 0.3, 7, "text");
  report.longestTaskMs = await page.evaluate(() => window.__longest);
  shared = t1;
  // Numbered among the tracks made, though a question took a job number before it.
  await expectText(page, "[data-testid=track] h3", /^Track 1 \(MusicGen, text mode, seed 7\)/, "the first track is Track 1");
  if (!t1.src.startsWith("blob:")) throw new Error(`the player has no track: ${t1.src}`);
  if (!t1.link || !t1.link.includes("#m2ugen=1.")) throw new Error(`no share link: ${t1.link}`);
  report.linkLengthFor0_3s = t1.link.length;
  const played = await page.$eval("[data-testid=player]", (a) => new Promise((ok) => {
    a.addEventListener("timeupdate", () => ok({ t: a.currentTime, d: a.duration }), { once: true });
    a.play().catch((e) => ok({ error: String(e) }));
    setTimeout(() => ok({ t: a.currentTime, d: a.duration, waited: true }), 10000);
  }));
  if (played.error || !(played.d > 0.25 && played.d < 0.4)) throw new Error(`the track does not play: ${JSON.stringify(played)}`);
  await shot(page, "3-music");

  // Stop: a long track stopped part-way is kept, marked, and shorter.
  await setField(page, "music-prompt", "a long track to stop");
  await setField(page, "seconds", 20);
  await setField(page, "mode", "text");
  await page.click("[data-testid=generate]");
  await page.waitForFunction(() => Number(document.querySelector("[data-testid=music-progress]")?.value ?? 0) >= 5);
  await page.click("[data-testid=stop-music]");
  await page.waitForFunction(() => document.querySelectorAll("[data-testid=track]").length >= 2 || document.querySelector("[role=alert][data-testid^=error-]"));
  const stopped = await text(page, "[data-testid=track]");
  if (!/stopped early/.test(stopped) || !/0:0\d/.test(stopped)) throw new Error(`the stopped track: ${stopped}`);

  // Edit the clip by instruction (caption mode: the LLM hears it, its answer conditions MusicGen).
  await (await page.$("[data-testid=attach]")).uploadFile(clip);
  await expectText(page, "[data-testid=attachment]", /The model hears chord\.wav/, "the clip is heard again");
  const t2 = await makeTrack(page, "Make this music faster and add drums.", 0.3, 3, "caption");
  if (t2.sha === t1.sha) throw new Error("the edit gave the same samples as the text track");
  await expectText(page, "[data-testid=track] h3", /^Track 3 \(/, "the third track made is Track 3");
  await expectText(page, "[data-testid=caption]", /The model's description/, "the caption is shown");

  // Lose the GPU device mid-generation: the page says so, reloads, and goes on.
  await setField(page, "music-prompt", "a long track to interrupt");
  await setField(page, "seconds", 20);
  await setField(page, "mode", "text");
  const detach2 = await page.$$("xpath/.//button[contains(., 'Remove attachment')]");
  await detach2[0].click();
  await page.click("[data-testid=generate]");
  await page.waitForSelector("[data-testid=music-progress]");
  await page.evaluate(() => window.m2ugenLoseDevice());
  await expectText(page, "[data-testid=error-devicelost]", /GPU was reset/, "the lost device is said");
  // Recovered: the model reloaded (the buttons come back only then) and the clip heard again.
  await page.waitForFunction(() => !document.querySelector("[data-testid=generate]")?.disabled);
  await expectText(page, "[data-testid=model-loaded]", /Loaded 'm2ugen-tiny-untrained'/, "the model is loaded again");
  const turnsKept = (await page.$$("[data-testid=answer]")).length;
  if (turnsKept !== 1) throw new Error(`the conversation was not kept (${turnsKept} turns)`);
  await page.click("[data-testid=error-devicelost] button");
  const t3 = await makeTrack(page, "a calm piano piece", 0.3, 7, "text");
  if (t3.sha !== t1.sha) throw new Error("after recovery the same request gives other samples");
  await shot(page, "4-recovered");

  // Keyboard: Tab reaches the controls, and focus is visible.
  await page.focus("[data-testid=load]");
  await page.keyboard.press("Tab");
  const focus = await page.evaluate(() => { const e = document.activeElement; const s = getComputedStyle(e); return { tag: e.tagName, outline: s.outlineStyle, width: s.outlineWidth }; });
  if (focus.outline === "none" || focus.width === "0px") throw new Error(`no visible focus on ${focus.tag}`);

  // The accessibility audit.
  await page.evaluate(axeSource);
  const axe = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] })).violations.map((v) => ({ id: v.id, impact: v.impact, n: v.nodes.length })));
  const bad = axe.filter((v) => v.impact === "serious" || v.impact === "critical");
  report.axe = axe.map((v) => `${v.id}(${v.impact})`).join(", ") || "none";
  if (bad.length) throw new Error(`axe: ${JSON.stringify(bad)}`);

  // A 360-pixel-wide screen: nothing wider than the screen.
  await page.setViewport({ width: 360, height: 800 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  await shot(page, "5-narrow");
  if (wide > 360) throw new Error(`the page is ${wide} px wide on a 360-pixel screen`);
  report.requests = requests.length;
});

await scenario("worker-without-webgpu", webgpu, async (page) => {
  // A browser that offers WebGPU to pages only (the worker's navigator.gpu hidden): the same
  // engine on the page's thread, said so; the longest main-thread task while music is made.
  await page.evaluateOnNewDocument(() => {
    window.__longest = 0;
    new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration); }).observe({ type: "longtask", buffered: true });
  });
  await loadModel(page, "?test-hooks=no-worker-gpu");
  await expectText(page, "[data-testid=notices]", /runs on the page's thread/, "the page says where the model runs");
  // The measure itself: a 120 ms task on the page's thread is seen.
  await page.evaluate(() => { setTimeout(() => { const t = performance.now(); while (performance.now() - t < 120); }, 0); });
  await page.waitForFunction(() => window.__longest >= 100, { timeout: 10000 }).catch(() => {});
  if (!(await page.evaluate(() => window.__longest >= 100))) throw new Error("the long-task observer does not see a 120 ms task");
  await page.evaluate(() => { window.__longest = 0; });
  await makeTrack(page, "a calm piano piece", 0.3, 7, "text");
  report.longestTaskMsOnPageThread = Math.round(await page.evaluate(() => window.__longest));
});

await scenario("share-link-in-a-fresh-profile", webgpu, async (page, { requests }) => {
  if (!shared) throw new Error("no track from the main flow");
  const fragment = shared.link.slice(shared.link.indexOf("#"));
  await page.goto(base + fragment, { waitUntil: "load" });
  await page.waitForSelector("[data-testid=track], [role=alert][data-testid^=error-]");
  const error = await page.$("[role=alert][data-testid^=error-]");
  if (error) throw new Error(await text(page, "[role=alert][data-testid^=error-]"));
  const sha = await page.$eval("[data-testid=track]", (t) => t.dataset.samplesSha256);
  if (sha !== shared.sha) throw new Error(`the shared track's samples differ (${sha} vs ${shared.sha})`);
  const parts = await text(page, "[data-testid=load-progress]");
  if (!/EnCodec/.test(parts) || /language model|music decoder/.test(parts)) throw new Error(`opening a link loaded more than EnCodec: ${parts}`);
  if (await page.$("[data-testid=model-loaded]")) throw new Error("opening a link loaded the whole model");
  await shot(page, "6-shared");
});

let recipe = null;

await scenario("audioldm2-decoder-and-its-recipe-link", webgpu, async (page) => {
  // The bundled model has both decoders: the page offers the choice, and AudioLDM 2's fields.
  await loadModel(page);
  await expectText(page, "[data-testid=model-loaded]", /MusicGen \(caption, text, embedding mode\) or AudioLDM 2 \(caption, text mode\)/, "both decoders are named with their modes");
  if (await page.$("[data-testid=steps]")) throw new Error("AudioLDM 2's steps are shown while MusicGen is chosen");
  await setField(page, "decoder", "audioldm2");
  await page.waitForSelector("[data-testid=steps]");
  // The guidance follows the decoder's default (MusicGen 3, AudioLDM 2 3.5).
  const guidance = await page.$eval("[data-testid=guidance]", (e) => e.value);
  if (guidance !== "3.5") throw new Error(`choosing AudioLDM 2 left the guidance at ${guidance}, not its default 3.5`);
  await setField(page, "steps", 2);
  const t = await makeTrack(page, "a calm piano piece", 0.1, 4, "text");
  if (!t.link || !t.link.includes("#m2ugen=2.")) throw new Error(`no recipe link: ${t.link}`);
  report.recipeLinkLength = t.link.length;
  await expectText(page, "[data-testid=track] h3", /AudioLDM 2, text mode, seed 4/, "the track names its decoder");
  await expectText(page, "[data-testid=track]", /carries the recipe/, "the link says it is a recipe");
  const seconds = await page.$eval("[data-testid=player]", (a) => new Promise((ok) => { if (a.readyState >= 1) ok(a.duration); else a.addEventListener("loadedmetadata", () => ok(a.duration), { once: true }); }));
  if (!(seconds > 0.09 && seconds < 0.11)) throw new Error(`the AudioLDM 2 track lasts ${seconds} s, not 0.1`);
  recipe = t;
  await shot(page, "9-audioldm2");
});

await scenario("audioldm2-recipe-in-a-fresh-profile", webgpu, async (page) => {
  if (!recipe) throw new Error("no AudioLDM 2 track");
  await page.goto(base + recipe.link.slice(recipe.link.indexOf("#")), { waitUntil: "load" });
  await page.waitForSelector("[data-testid=track], [role=alert][data-testid^=error-]");
  const error = await page.$("[role=alert][data-testid^=error-]");
  if (error) throw new Error(await text(page, "[role=alert][data-testid^=error-]"));
  const sha = await page.$eval("[data-testid=track]", (t) => t.dataset.samplesSha256);
  if (sha !== recipe.sha) throw new Error(`the recipe made other samples (${sha} vs ${recipe.sha})`);
  const parts = await text(page, "[data-testid=load-progress]");
  if (!/AudioLDM 2 \(to make the shared track again\)/.test(parts) || /language model|music decoder|EnCodec/.test(parts)) throw new Error(`opening a recipe loaded more than AudioLDM 2: ${parts}`);
  if (await page.$("[data-testid=model-loaded]")) throw new Error("opening a recipe loaded the whole model");
});

await scenario("malformed-share-link", webgpu, async (page) => {
  await page.goto(base + "#m2ugen=1.AAAA!!not-a-link", { waitUntil: "load" });
  await expectText(page, "[data-testid=error-link]", /share link/, "a malformed link is named");
});

await scenario("profiles-and-a-link-with-a-bad-model-url", webgpu, async (page) => {
  await page.goto(base, { waitUntil: "load" });
  await page.waitForSelector("[data-testid=adapter]");
  // A named model fills the URL field (built without a model origin: models/ on this site);
  // its folder is not served here, and loading it says so, naming it.
  await page.select("[data-testid=profile]", "3");
  const url = await page.$eval("#model-url", (e) => e.value);
  if (url !== "models/mu-llama/") throw new Error(`the MU-LLaMA profile set the URL to '${url}'`);
  await page.waitForFunction(() => !document.querySelector("[data-testid=load]").disabled);
  await page.click("[data-testid=load]");
  await expectText(page, "[role=alert][data-testid^=error-]", /mu-llama/, "a profile whose folder is missing is named");
  await page.select("[data-testid=profile]", "bundled");
  if ((await page.$eval("#model-url", (e) => e.value)) !== "model") throw new Error("the bundled profile did not set the URL back to 'model'");
  // A share link opened while the URL field names a model the page may not fetch is refused
  // before anything is fetched.
  await page.$eval("#model-url", (e) => { e.value = "https://elsewhere.example/m/"; e.dispatchEvent(new Event("input", { bubbles: true })); });
  await page.evaluate(() => { location.hash = "#m2ugen=1.AAAA"; });
  await expectText(page, "[data-testid=error-input]", /share link cannot be opened.*elsewhere\.example/, "the link's model URL is checked");
});

await scenario("undecodable-upload", webgpu, async (page) => {
  await loadModel(page);
  await (await page.$("[data-testid=attach]")).uploadFile(broken);
  await expectText(page, "[data-testid=error-media]", /broken\.wav/, "the file is named");
});

await scenario("download-breaks-off", webgpu, async (page) => {
  await page.goto(base + "?model=cut-model", { waitUntil: "load" });
  await page.waitForSelector("[data-testid=adapter]");
  await page.click("[data-testid=load]");
  await expectText(page, "[data-testid=error-network]", /broke off|fetched|download/i, "the broken download is said");
  await shot(page, "7-network");
  // The connection is back: loading again reuses every tensor verified before the break.
  await page.$eval("#model-url", (e) => { e.value = "model"; e.dispatchEvent(new Event("input", { bubbles: true })); });
  await page.click("[data-testid=load]");
  await expectText(page, "[data-testid=model-loaded]", /Loaded/, "the model loads once the connection is back");
  await expectText(page, "[data-testid=load-progress]", /from this browser's cache/, "what was verified before the break is reused");
});

await scenario("storage-full", webgpu, async (page, { browser }) => {
  const client = await page.createCDPSession();
  await client.send("Storage.overrideQuotaForOrigin", { origin, quotaSize: 4096 });
  await loadModel(page);
  await expectText(page, "[data-testid=notices]", /storage is full/, "the full storage is said");
});

await scenario("without-webgpu", ["--disable-features=WebGPU"], async (page) => {
  await page.goto(base, { waitUntil: "load" });
  await expectText(page, "[data-testid=adapter-error]", /WebGPU/, "no WebGPU is said");
  await shot(page, "8-no-webgpu");
});

server.close();
fs.rmSync(tmp, { recursive: true, force: true });
console.log(`e2e report: ${JSON.stringify(report)}`);
console.log(`e2e: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
