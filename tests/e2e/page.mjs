// End-to-end check of the built page (dist/) in headless Chromium:
//   1. with WebGPU: the adapter line appears, and the CSP is never violated;
//   2. without WebGPU (flag off): a visible error tells the user what to do.
// Usage: node tests/e2e/page.mjs DIST_DIR [SCREENSHOT_DIR]   (NODE_PATH must reach puppeteer-core)
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.join(process.env.M2UGEN_TOOLS ?? ".", "node_modules", "x.js"));
const puppeteer = require("puppeteer-core");

const dist = path.resolve(process.argv[2] ?? "dist");
const shots = process.argv[3];
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css", ".json": "application/json" };

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  const file = path.join(dist, url.pathname === "/" ? "index.html" : decodeURIComponent(url.pathname));
  if (!file.startsWith(dist) || !fs.existsSync(file)) {
    res.writeHead(404).end("not found");
    return;
  }
  res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream" });
  fs.createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const base = `http://127.0.0.1:${server.address().port}/`;

const common = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run"];
let failures = 0;

async function scenario(name, extraArgs, selector, check) {
  const userDataDir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? "/tmp", "m2ugen-e2e-"));
  const browser = await puppeteer.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", pipe: true, userDataDir, args: [...common, ...extraArgs] });
  try {
    const page = await browser.newPage();
    const problems = [];
    page.on("console", (m) => { if (/Content.Security.Policy|Refused to/i.test(m.text())) problems.push(m.text()); });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    await page.goto(base, { waitUntil: "load" });
    await page.waitForSelector(selector, { timeout: 60000 });
    const text = await page.$eval(selector, (e) => e.textContent);
    if (shots) await page.screenshot({ path: path.join(shots, `${name}.png`) });
    const wrong = [...problems, ...check(text)];
    if (wrong.length) {
      failures++;
      console.log(`FAIL ${name}: ${wrong.join("; ")}`);
    } else {
      console.log(`ok   ${name}: ${text}`);
    }
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e.message}`);
  } finally {
    await browser.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

await scenario("page-shows-adapter", ["--enable-unsafe-webgpu"], "[data-testid=adapter]",
  (t) => (t.startsWith("GPU: ") && t.includes("max binding") ? [] : [`unexpected adapter line '${t}'`]));
await scenario("page-without-webgpu", ["--disable-features=WebGPU"], "[data-testid=adapter-error]",
  (t) => (/WebGPU/.test(t) ? [] : [`the error does not mention WebGPU: '${t}'`]));

server.close();
console.log(`e2e: ${2 - failures} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
