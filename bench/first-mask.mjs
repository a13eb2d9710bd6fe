// Time to first mask (a benchmark, not a test): a fresh page (empty caches) with one
// <clip-seg> on the CPU backend, from navigation to the first mask: downloading the wasm and
// the pack, compiling, loading, encoding, segmenting. Each SITE is a folder with www/ and pkg/
// (a copy of the repository's at some commit, wasm built) and a page `first.html` written by this
// script; sites are measured in alternation, ROUNDS times each, over a simulated link (one token
// bucket shared by all connections, MBPS megabits per second; 0: unlimited) with .wasm, .js
// and .html gzipped (as static hosts serve them).
//
//   node bench/first-mask.mjs --site NAME=DIR,ELEMENT,MODEL ... [--rounds 3] [--mbps 0,100] [--out FILE]
//     ELEMENT  the element's module relative to DIR (www/clip-seg.js before the package, pkg/clip-seg.js after)
//     MODEL    the pack or split manifest URL relative to DIR (models/... may be a symlink)
// Prints medians per site and link and writes the runs to FILE (default
// bench/results/first-mask-<date>.json).
import fs from 'node:fs';
import { createServer } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { MIME, launchChromium } from '../tests/e2e/harness.mjs';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const sites = args.flatMap((a, i) => (args[i - 1] === '--site' ? [a] : [])).map((s) => {
  const [name, rest] = s.split('=');
  const [dir, element, model] = rest.split(',');
  return { name, dir: path.resolve(dir), element, model };
});
if (!sites.length) throw new Error('usage: node bench/first-mask.mjs --site NAME=DIR,ELEMENT,MODEL ... [--rounds N] [--mbps 0,100]');
const rounds = Number(opt('--rounds', 3));
const links = opt('--mbps', '0,100').split(',').map(Number);
const out = opt('--out', `bench/results/first-mask-${new Date().toISOString().slice(0, 10)}.json`);
const IMAGE = 'assets/chelsea.jpg', PROMPT = 'a cat';

// The page: the element from the site's own files, the first result (or error) recorded.
for (const s of sites) {
  fs.mkdirSync(`${s.dir}/assets`, { recursive: true });
  fs.copyFileSync(IMAGE, `${s.dir}/${IMAGE}`);
  fs.writeFileSync(`${s.dir}/first.html`, `<!doctype html><meta charset="utf-8"><title>first mask</title>
<script type="module">
  import './${s.element}';
  const el = document.querySelector('clip-seg');
  for (const type of ['clipseg-result', 'clipseg-done', 'clipseg-error'])
    el.addEventListener(type, (e) => (window.__first ??= { type, ms: performance.now(), message: e.detail?.message, encodeMs: e.detail?.encodeMs, segmentMs: e.detail?.segmentMs }));
</script>
<clip-seg backend="cpu" src="${IMAGE}" prompt="${PROMPT}" model="${s.model}"></clip-seg>`);
}

// Static files with gzip for text and wasm, through one shared token bucket.
let bytesPerMs = 0; // 0: unlimited
let bucket = { free: 0 };
const gzipped = new Map();
async function throttled(res, data) {
  for (let at = 0; at < data.length; ) {
    const chunk = data.subarray(at, at + 64 * 1024);
    if (bytesPerMs) {
      const now = performance.now();
      const start = Math.max(now, bucket.free);
      bucket.free = start + chunk.length / bytesPerMs;
      if (bucket.free - now > 1) await new Promise((r) => setTimeout(r, bucket.free - now));
    }
    if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
    at += chunk.length;
  }
  res.end();
}
function serveSite(dir) {
  const s = createServer(async (req, res) => {
    const file = path.join(dir, decodeURIComponent(new URL(req.url, 'http://h').pathname));
    let data;
    try {
      data = fs.readFileSync(file);
    } catch {
      return res.writeHead(404).end();
    }
    const ext = path.extname(file);
    const headers = { 'content-type': MIME[ext] ?? 'application/octet-stream', 'cache-control': 'no-cache' };
    if (['.wasm', '.js', '.html', '.json'].includes(ext) && /gzip/.test(req.headers['accept-encoding'] ?? '')) {
      if (!gzipped.has(file)) gzipped.set(file, zlib.gzipSync(data, { level: 6 }));
      data = gzipped.get(file);
      headers['content-encoding'] = 'gzip';
    }
    headers['content-length'] = data.length;
    res.writeHead(200, headers);
    if (req.method === 'HEAD') return res.end();
    await throttled(res, data);
  });
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(s)));
}

const browser = await launchChromium();
const runs = [];
console.log(`Chromium ${browser.version()}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model}); ${rounds} rounds, links ${links.map((m) => (m ? `${m} Mbit/s` : 'unlimited')).join(', ')}`);
for (const s of sites) s.server = await serveSite(s.dir);
for (let round = 0; round < rounds; round++) {
  for (const mbps of links) {
    // Alternating order from round to round.
    for (const s of round % 2 ? [...sites].reverse() : sites) {
      bytesPerMs = (mbps * 1e6) / 8 / 1000;
      bucket = { free: 0 };
      const context = await browser.newContext(); // empty caches: a first visit
      const page = await context.newPage();
      await page.goto(`http://127.0.0.1:${s.server.address().port}/first.html`);
      await page.waitForFunction(() => window.__first, null, { timeout: 15 * 60_000, polling: 100 });
      const first = await page.evaluate(() => window.__first);
      await context.close();
      if (first.type === 'clipseg-error') throw new Error(`${s.name}: ${first.message}`);
      runs.push({ site: s.name, mbps, round, ms: first.ms, encode_ms: first.encodeMs, segment_ms: first.segmentMs });
      const secs = (ms) => (ms / 1000).toFixed(2);
      console.log(`  round ${round + 1} ${mbps ? `${mbps} Mbit/s` : 'unlimited'} ${s.name}: ${secs(first.ms)} s (until the model was ready ${secs(first.ms - first.encodeMs - first.segmentMs)}, encode ${secs(first.encodeMs)}, segment ${secs(first.segmentMs)})`);
    }
  }
}
await browser.close();
for (const s of sites) s.server.close();

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const summary = {};
for (const mbps of links) {
  const row = {};
  for (const s of sites) row[s.name] = +(median(runs.filter((r) => r.site === s.name && r.mbps === mbps).map((r) => r.ms)) / 1000).toFixed(2);
  summary[mbps ? `${mbps} Mbit/s` : 'unlimited'] = row;
}
console.log('\nmedian seconds to the first mask:');
console.table(summary);
const files = Object.fromEntries(sites.map((s) => [s.name, {
  wasm: fs.readdirSync(`${s.dir}/pkg`).filter((f) => f.endsWith('.wasm')).map((f) => {
    const b = fs.readFileSync(`${s.dir}/pkg/${f}`);
    return { file: f, bytes: b.length, gzip_bytes: zlib.gzipSync(b, { level: 6 }).length };
  }),
  model: s.model,
}]));
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), command: `node bench/first-mask.mjs ${args.join(' ')}`, image: IMAGE, prompt: PROMPT, cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, chromium: browser.version(), files, summary, runs }, null, 1));
console.log(`wrote ${out}`);
