// Browser benchmark (a benchmark, not a test): `bench/browser.sh PACK IMAGE [PROMPT] [--iters N]`.
// In one run, on one model pack, image and prompt:
//   native   `clipseg bench --backend cpu` (one JSON line: load_s, first_pass_s, full_pass_s,
//            reprompt_s; medians over --iters after one warm-up pass),
//   browser  headless Chromium on www/bench.html through ClipSegClient, backend=cpu (wasm, one
//            thread) and backend=webgpu (SwiftShader without a GPU): load, a first full pass
//            (warm-up, shader compilation), N full passes (encode + segment), N re-prompts
//            (segment only), and the worker's wasm memory (after load and at the end; linear
//            memory only grows, so both are high-water marks).
// Prints a table and ratios and writes bench/results/browser-<date>-<time>.json.
// pkg/ and www/ are copied to target/bench/site/ first, so a rebuild of pkg/ during the run does
// not change what is measured. CPU time used by processes outside this benchmark is sampled
// from /proc and reported per stage: another build running at the same time skews timings.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromiumArgs, launchChromium, serve } from '../tests/e2e/harness.mjs';

const USAGE = `usage: bench/browser.sh PACK [IMAGE] [PROMPT] [--iters N] [--timeout-min M] [--backends cpu,webgpu] [--out FILE]
  PACK     a .bpk model pack (clipseg convert)
  IMAGE    default assets/chelsea.jpg
  PROMPT   default "a photo of a cat"
  --iters  timed full passes and re-prompts after the first pass (default 3)
  --timeout-min  cap on the whole run (default 25); a stage still running then is reported as timed out
  --backends     browser backends, run in this order (default cpu,webgpu); cpu:simd128 or
                 cpu:relaxed-simd names the wasm build (default: relaxed SIMD where Chromium has it),
                 webgpu:dot4 or webgpu:off how q8 matrices run (integer dot product or decoded)
  --out    results file (default bench/results/browser-<date>-<time>.json)
  env: CLIPSEG_BIN (default target/debug/clipseg), CHROMIUM, E2E_CHROMIUM_ARGS`;

const root = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
const started = Date.now();
const opts = parseArgs(process.argv.slice(2));
const deadline = started + opts.timeoutMin * 60_000;
const PAGE_START_MS = 60_000; // bench.js must set window.__bench within this
const POLL_MS = 500;

const results = {
  date: new Date(started).toISOString(),
  command: ['bench/browser.sh', ...process.argv.slice(2)].join(' '),
  machine: { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, memory_gb: +(os.totalmem() / 2 ** 30).toFixed(1), loadavg_at_start: os.loadavg() },
  pack: null, image: opts.image, prompt: opts.prompt, iters: opts.iters, timeout_min: opts.timeoutMin,
  pkg: null, chromium: null, chromium_args: null,
  runtimes: {}, // native, browser-cpu, browser-webgpu: {load_s, first_pass_s, full_pass_s, reprompt_s, ...}
  ratios: {},
  other_load: {}, // per stage: CPU used by processes outside this benchmark
  notes: [],
};
let currentStage = 'setup';
let outFile = opts.out;

// Whatever hangs (a stuck browser, a close that never returns), stop shortly after the cap.
setTimeout(() => {
  console.log(`\nHARD TIMEOUT after ${opts.timeoutMin} min (+2): stuck in stage "${currentStage}"`);
  results.notes.push(`hard timeout in stage "${currentStage}"`);
  finish(2);
}, deadline - Date.now() + 2 * 60_000).unref();

process.chdir(root);
const bin = path.resolve(root, process.env.CLIPSEG_BIN ?? 'target/debug/clipseg');
for (const [what, f] of [['pack', opts.pack], ['image', opts.image], ['CLI (cargo build --features native, or set CLIPSEG_BIN)', bin]])
  if (!fs.existsSync(f)) die(`${what} not found: ${f}`);
results.pack = { path: opts.pack, bytes: fs.statSync(opts.pack).size };
const monitor = startLoadMonitor();
const busyAtStart = buildProcesses();
if (busyAtStart.length) note(`build processes running at start: ${busyAtStart.join(', ')} (timings are skewed)`);

// ---- 1. native ----
stage('native');
results.runtimes.native = runNative();

// ---- 2. browser ----
stage('pkg snapshot');
const site = await snapshotSite();
const server = await serve(site.dir, () => {});
const base = `http://127.0.0.1:${server.address().port}`;
const args = chromiumArgs();
stage('chromium launch');
const browser = await launchChromium(args);
results.chromium = browser.version();
results.chromium_args = args;
console.log(`Chromium ${results.chromium}`);
for (const [i, backend] of opts.backends.entries()) {
  stage(`browser-${backend}`);
  // Fair share of what is left; time a run does not use goes to the next.
  const budget = Math.max(0, (deadline - Date.now()) / (opts.backends.length - i));
  results.runtimes[`browser-${backend}`] = await runPage(backend, budget);
}
stage('shutdown');
await withTimeout(browser.close(), 30_000, 'browser.close').catch((e) => note(e.message));
server.close();
finish(0);

// ---------------------------------------------------------------------------------------------

function runNative() {
  const argv = ['bench', '--model', opts.pack, '--image', opts.image, '--prompt', opts.prompt, '--iters', String(opts.iters), '--backend', 'cpu'];
  const timeFile = path.join(os.tmpdir(), `clipseg-bench-time-${process.pid}`);
  const timed = fs.existsSync('/usr/bin/time');
  const [cmd, cmdArgs] = timed ? ['/usr/bin/time', ['-f', '%e %U %S %M', '-o', timeFile, bin, ...argv]] : [bin, argv];
  const shown = `${path.relative(root, bin)} ${argv.map(quote).join(' ')}`;
  console.log(`$ ${shown}`);
  const timeout = Math.round(Math.max(10_000, Math.min(10 * 60_000, (deadline - Date.now()) / 3)));
  const t0 = Date.now();
  let out;
  try {
    out = execFileSync(cmd, cmdArgs, { encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'inherit'] });
  } catch (e) {
    const why = e.signal === 'SIGTERM' ? `timed out after ${(timeout / 1000).toFixed(0)} s` : e.message.split('\n')[0];
    console.log(`  native: ${why}`);
    return { command: shown, error: `native bench: ${why}`, timed_out: e.signal === 'SIGTERM' };
  }
  const line = out.trim().split('\n').filter((l) => l.startsWith('{')).at(-1);
  let j;
  try {
    j = JSON.parse(line);
  } catch {
    return { command: shown, error: `native bench printed no JSON line: ${out.trim().slice(0, 200)}` };
  }
  console.log(`  ${line}`);
  const r = { command: shown, raw: j, wall_s: (Date.now() - t0) / 1000, load_s: j.load_s, first_pass_s: j.first_pass_s, full_pass_s: j.full_pass_s, reprompt_s: j.reprompt_s, backend: j.backend };
  if (timed) {
    try {
      const [wall, user, sys, maxKiB] = fs.readFileSync(timeFile, 'utf8').trim().split('\n').at(-1).split(' ').map(Number);
      // cores_used > 1: the native CPU backend used more than one core.
      Object.assign(r, { process_cpu_s: +(user + sys).toFixed(2), cores_used: +((user + sys) / wall).toFixed(2), max_rss_bytes: maxKiB * 1024 });
    } catch {}
    fs.rmSync(timeFile, { force: true });
  }
  return r;
}

// One page, one backend; never longer than `budget` ms. Returns the runtime's figures, with
// `timed_out_in` (the stage that was running) or `error` when it did not finish.
async function runPage(backend, budget) {
  const t0 = Date.now();
  const r = { budget_s: Math.round(budget / 1000) };
  if (budget < 30_000) return { ...r, error: 'skipped: no time left', timed_out_in: 'not started' };
  const page = await browser.newPage();
  page.on('console', (m) => {
    if (['error', 'warning'].includes(m.type()) || /Content Security Policy/.test(m.text())) console.log(`  [${backend}] console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => console.log(`  [${backend}] page error: ${e.message}`));
  page.on('response', (res) => res.status() >= 400 && console.log(`  [${backend}] ${res.status()}: ${res.url()}`));
  page.on('crash', () => console.log(`  [${backend}] page crashed`));
  const [engine, variant = 'auto'] = backend.split(':');
  const option = engine === 'webgpu' ? 'gpu_int8' : 'wasm';
  const query = new URLSearchParams({ pack: `/data/${path.basename(site.pack)}`, image: `/data/${path.basename(site.image)}`, prompt: opts.prompt, backend: engine, [option]: variant, iters: String(opts.iters), pause: '1' });
  console.log(`[browser ${backend}] ${base}/www/bench.html?${query}  (budget ${(budget / 60_000).toFixed(1)} min)`);
  let b = {};
  let lastStage = '';
  let stageT0 = Date.now();
  try {
    await page.goto(`${base}/www/bench.html?${query}`, { timeout: PAGE_START_MS });
    await page.waitForFunction(() => window.__bench, null, { timeout: PAGE_START_MS });
    for (;;) {
      b = await withTimeout(page.evaluate(() => window.__bench), 60_000, 'reading window.__bench');
      if (b.stage !== lastStage) {
        if (lastStage) console.log(`  [${backend}] ${lastStage}: ${((Date.now() - stageT0) / 1000).toFixed(1)} s`);
        [lastStage, stageT0] = [b.stage, Date.now()];
      }
      if (b.done) break;
      if (b.stage === 'loaded, waiting for the driver') {
        r.wasm_memory_after_load = await wasmMemory(page, b.wasm);
        await page.evaluate(() => window.__benchContinue());
      }
      if (Date.now() - t0 > budget) {
        r.timed_out_in = b.stage;
        const p = b.stage === 'load' && b.progress ? ` (${b.progress.loaded}/${b.progress.total} bytes fetched)` : '';
        console.log(`  [${backend}] TIMED OUT in stage "${b.stage}"${p} after ${((Date.now() - t0) / 60_000).toFixed(1)} min (budget ${(budget / 60_000).toFixed(1)} min)`);
        break;
      }
      await sleep(POLL_MS);
    }
  } catch (e) {
    r.error = `page: ${e.message.split('\n')[0]}`;
    r.timed_out_in = b.stage ?? 'page start';
    console.log(`  [${backend}] ${r.error} (stage "${r.timed_out_in}")`);
  }
  if (b.done && !b.error) r.wasm_memory_end = await wasmMemory(page, b.wasm);
  await withTimeout(page.close(), 30_000, 'page.close').catch((e) => note(`${backend}: ${e.message}`));
  if (b.error) {
    r.error = b.error;
    console.log(`  [${backend}] error: ${b.error}`);
  }
  Object.assign(r, summarizePage(b));
  r.wall_s = (Date.now() - t0) / 1000;
  return r;
}

function summarizePage(b) {
  const s = (ms) => (ms === undefined ? undefined : ms / 1000);
  const full = (b.full ?? []).map((p) => p.wall_ms);
  const rep = (b.reprompt ?? []).map((p) => p.wall_ms);
  const passes = [b.first, ...(b.full ?? []), ...(b.reprompt ?? [])].filter(Boolean);
  return {
    backend: b.backend, wasm: b.wasm, int8_kernel: b.int8_kernel, gpu_int8_dot: b.gpu_int8_dot, adapter: b.adapter, reason: b.reason, size: b.size, image_px: b.image && `${b.image.width}x${b.image.height}`,
    csp_violations: b.csp?.length ? b.csp : undefined,
    load_s: s(b.load?.wall_ms),
    first_pass_s: s(b.first?.wall_ms),
    full_pass_s: full.length ? s(median(full)) : undefined,
    reprompt_s: rep.length ? s(median(rep)) : undefined,
    full_passes_done: full.length, reprompts_done: rep.length,
    // The worker's own time per request (no postMessage, no pixel extraction).
    worker: {
      load_s: s(b.load?.worker_ms),
      first_encode_s: s(b.first?.encode_ms), first_segment_s: s(b.first?.segment_ms),
      encode_s: full.length ? s(median(b.full.map((p) => p.encode_ms))) : undefined,
      segment_s: full.length ? s(median(b.full.map((p) => p.segment_ms))) : undefined,
      reprompt_segment_s: rep.length ? s(median(b.reprompt.map((p) => p.segment_ms))) : undefined,
    },
    all_probs_valid: passes.length ? passes.every((p) => p.valid) : undefined,
    mean_prob: b.first?.mean_prob,
    passes_ms: { first: b.first?.wall_ms, full, reprompt: rep },
  };
}

// Byte length of the worker's wasm linear memory, through the module the worker imported
// (the glue's init() returns the already-instantiated exports; `build`: the page's `wasm`).
// null if unavailable.
async function wasmMemory(page, build) {
  const worker = page.workers().find((w) => new URL(w.url()).pathname.endsWith('/pkg/worker.js'));
  if (!worker) return null;
  const glue = build === 'relaxed-simd' ? '../pkg/clipseg_relaxed.js' : '../pkg/clipseg.js';
  try {
    return await withTimeout(
      worker.evaluate(async (glue) => {
        const module = await import(new URL(glue, self.location.href).href);
        return (await module.default()).memory.buffer.byteLength;
      }, glue),
      30_000, 'reading the wasm memory size');
  } catch (e) {
    note(`wasm memory: ${e.message.split('\n')[0]}`);
    return null;
  }
}

// pkg/ (waiting while its wasm is missing or being written), www/, and links to the pack and image,
// under target/bench/site/.
async function snapshotSite() {
  const files = ['pkg/clipseg.js', 'pkg/clipseg_bg.wasm', 'pkg/clipseg_relaxed.js', 'pkg/clipseg_relaxed_bg.wasm'];
  const waitUntil = Math.min(deadline - 5 * 60_000, Date.now() + 10 * 60_000);
  for (;;) {
    const missing = files.filter((f) => !fs.existsSync(f));
    const writers = processes().filter((p) => /^(wasm-bindgen|wasm-opt)$/.test(p.comm)).map((p) => p.comm);
    const age = missing.length ? 0 : Date.now() - Math.max(...files.map((f) => fs.statSync(f).mtimeMs));
    if (!missing.length && !writers.length && age > 10_000) break;
    const why = missing.length ? `${missing.join(', ')} missing` : writers.length ? `${writers.join(', ')} running` : 'pkg/ written in the last 10 s';
    if (Date.now() > waitUntil) die(`pkg/ not ready: ${why}`);
    console.log(`waiting for pkg/: ${why}`);
    await sleep(10_000);
  }
  const dir = path.join(root, 'target/bench/site');
  fs.rmSync(dir, { recursive: true, force: true });
  for (const d of ['pkg', 'www', 'data']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  // The whole package (client, worker, glue, wasm), as the page imports it from ../pkg/.
  for (const f of fs.readdirSync('pkg').filter((f) => /\.(js|wasm)$/.test(f))) fs.copyFileSync(path.join('pkg', f), path.join(dir, 'pkg', f));
  for (const f of fs.readdirSync('www').filter((f) => /\.(js|html)$/.test(f))) fs.copyFileSync(path.join('www', f), path.join(dir, 'www', f));
  const wasm = fs.readFileSync(path.join(dir, 'pkg/clipseg_bg.wasm'));
  const glue = fs.readFileSync(path.join(dir, 'pkg/clipseg.js'));
  if (!glue.includes('clipseg_bg.wasm')) die('pkg/clipseg.js does not look like the wasm-bindgen glue');
  results.pkg = {
    wasm_bytes: wasm.length,
    wasm_sha256: createHash('sha256').update(wasm).digest('hex').slice(0, 16),
    built: new Date(fs.statSync('pkg/clipseg_bg.wasm').mtimeMs).toISOString(),
  };
  console.log(`pkg/clipseg_bg.wasm: ${(wasm.length / 1e6).toFixed(1)} MB, sha256 ${results.pkg.wasm_sha256}…, built ${results.pkg.built}`);
  const link = (src, name) => {
    const to = path.join(dir, 'data', name);
    fs.symlinkSync(path.resolve(root, src), to);
    return to;
  };
  const pack = link(opts.pack, `pack-${path.basename(opts.pack)}`);
  const image = link(opts.image, `image-${path.basename(opts.image)}`);
  return { dir, pack, image };
}

// ---- output ----

function finish(code) {
  stage('report');
  monitor?.stop();
  const rt = results.runtimes;
  const key = ['load_s', 'first_pass_s', 'full_pass_s', 'reprompt_s'];
  const ratio = (a, b) => Object.fromEntries(key.map((k) => [k, a?.[k] > 0 && b?.[k] > 0 ? a[k] / b[k] : null]));
  const pairs = [
    ['browser-webgpu / native', rt['browser-webgpu'], rt.native],
    ['browser-cpu / native', rt['browser-cpu'], rt.native],
    ['webgpu / cpu (browser)', rt['browser-webgpu'], rt['browser-cpu']],
  ];
  for (const [name, a, b] of pairs) if (a && b) results.ratios[name] = ratio(a, b);
  for (const r of Object.values(rt)) if (r.full_pass_s > 0 && r.reprompt_s > 0) r.reprompt_over_full = r.reprompt_s / r.full_pass_s;

  const lines = [];
  const p = (s = '') => lines.push(s);
  p();
  p(`== clipseg browser benchmark, ${results.date}`);
  p(`pack ${opts.pack} (${(results.pack.bytes / 1e6).toFixed(1)} MB), image ${opts.image}, prompt ${JSON.stringify(opts.prompt)}, iters ${opts.iters}`);
  p(`machine: ${results.machine.cpus} x ${results.machine.cpu_model}; Chromium ${results.chromium ?? '-'}; wasm ${results.pkg ? `${(results.pkg.wasm_bytes / 1e6).toFixed(1)} MB built ${results.pkg.built}` : '-'}`);
  p();
  const cols = ['runtime', 'load', 'first pass', `full pass (med)`, `re-prompt (med)`, 're-prompt/full', 'memory'];
  const rows = [];
  for (const [name, label] of [['native', 'native cpu'], ['browser-webgpu', 'browser webgpu'], ['browser-cpu', 'browser cpu']]) {
    const r = rt[name];
    if (!r) continue;
    const partial = (done) => (r.timed_out_in && done < opts.iters ? ` (${done}/${opts.iters})*` : '');
    rows.push([
      label,
      sec(r.load_s), sec(r.first_pass_s),
      sec(r.full_pass_s) + partial(r.full_passes_done ?? opts.iters),
      sec(r.reprompt_s) + partial(r.reprompts_done ?? opts.iters),
      r.reprompt_over_full ? r.reprompt_over_full.toFixed(3) : '-',
      name === 'native' ? `max RSS ${mb(r.max_rss_bytes)}` : `wasm ${mb(r.wasm_memory_after_load)} / ${mb(r.wasm_memory_end)}`,
    ]);
  }
  table(p, cols, rows);
  p();
  const rrows = Object.entries(results.ratios).map(([n, r]) => [n, ...key.map((k) => (r[k] ? `${r[k].toFixed(2)}x` : '-'))]);
  if (rrows.length) table(p, ['ratio', 'load', 'first pass', 'full pass', 're-prompt'], rrows);
  p();
  for (const [name, r] of Object.entries(rt)) {
    if (name === 'native') {
      if (r.error) p(`native: ${r.error}`);
      else p(`native: ${r.backend}${r.cores_used !== undefined ? `, ${r.cores_used} core(s) busy on average (${r.process_cpu_s} CPU-s in ${r.wall_s.toFixed(1)} s)` : ''}`);
      continue;
    }
    const w = r.worker ?? {};
    const bits = [`${name}: ${r.backend ?? '?'}${r.wasm ? ` (wasm ${r.wasm}${r.int8_kernel ? `, ${r.int8_kernel}` : ''}${r.gpu_int8_dot !== undefined ? `, q8 ${r.gpu_int8_dot ? 'on dot4I8Packed' : 'decoded to f32'}` : ''})` : ''}${r.adapter ? ` on "${r.adapter}"` : ''}`];
    if (w.load_s !== undefined) bits.push(`worker-side load (fetch + Engine.load, without worker start-up and wasm compilation) ${sec(w.load_s)}`);
    if (w.encode_s !== undefined) bits.push(`worker-side full pass: encode ${sec(w.encode_s)} + segment ${sec(w.segment_s)}; re-prompt segment ${sec(w.reprompt_segment_s)}; first pass encode ${sec(w.first_encode_s)} + segment ${sec(w.first_segment_s)}`);
    if (r.all_probs_valid === false) bits.push('INVALID PROBABILITIES in the output');
    if (r.csp_violations) bits.push(`CSP violations: ${r.csp_violations.join('; ')}`);
    if (r.timed_out_in) bits.push(`TIMED OUT in stage "${r.timed_out_in}" (budget ${r.budget_s} s)`);
    if (r.error) bits.push(`error: ${r.error}`);
    p(bits.join('; '));
  }
  const measured = Object.entries(results.other_load).filter(([st]) => st === 'native' || st.startsWith('browser-'));
  p(`other processes' CPU use (cores, of ${results.machine.cpus}): ${measured.map(([st, l]) => `${st} ${(l.cores ?? 0).toFixed(2)}`).join(', ')}`);
  for (const [st, l] of Object.entries(results.other_load)) {
    if ((st === 'native' || st.startsWith('browser-')) && l.wall_s >= 1 && l.cores >= 0.1) p(`WARNING: during ${st}, other processes kept ${l.cores.toFixed(2)} of ${results.machine.cpus} cores busy (${l.top.map(([c, v]) => `${c} ${v.toFixed(2)}`).join(', ')}): timings skewed`);
  }
  for (const n of results.notes) p(`note: ${n}`);
  p('memory: native = peak resident set of the CLI process; browser = the worker\'s wasm linear memory after load / at the end (it never shrinks: high-water marks; WebGPU buffers not included)');
  if (Object.values(rt).some((r) => r.timed_out_in)) p('(done/asked)* = a stage timed out: median over the passes that finished');
  p('load: native = read + parse the file; browser = fetch over localhost HTTP + Engine.load in the worker (WebGPU: + adapter, weight upload)');
  p('browser times are wall-clock on the page around ClipSegClient calls (worker round trip, pixel extraction for encode, readback included)');
  if (!outFile) {
    const d = new Date(started);
    const stamp = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
    outFile = path.join(root, 'bench/results', `browser-${stamp}.json`);
  }
  results.total_s = (Date.now() - started) / 1000;
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, `${JSON.stringify(results, null, 2)}\n`);
  const shown = outFile.startsWith(`${root}/`) ? path.relative(root, outFile) : outFile;
  p(`results: ${shown} (total ${(results.total_s / 60).toFixed(1)} min)`);
  console.log(lines.join('\n'));
  // 3: finished, but some runtime failed or timed out (its figures are partial or missing).
  process.exit(code || (Object.values(rt).some((r) => r.error || r.timed_out_in) ? 3 : 0));
}

function table(p, cols, rows) {
  const w = cols.map((c, i) => Math.max(c.length, ...rows.map((r) => String(r[i]).length)));
  const fmt = (r) => r.map((v, i) => (i === 0 ? String(v).padEnd(w[i]) : String(v).padStart(w[i]))).join('  ');
  p(fmt(cols));
  p(w.map((n) => '-'.repeat(n)).join('  '));
  for (const r of rows) p(fmt(r));
}

// ---- load monitor: CPU time of processes that are not this benchmark or its children ----

function processes() {
  const out = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = fs.readFileSync(`/proc/${d}/stat`, 'latin1');
      const close = s.lastIndexOf(')');
      const f = s.slice(close + 2).split(' ');
      out.push({ pid: +d, comm: s.slice(s.indexOf('(') + 1, close), ppid: +f[1], ticks: +f[11] + +f[12] });
    } catch {} // exited meanwhile
  }
  return out;
}

function buildProcesses() {
  const names = /^(cargo|rustc|wasm-bindgen|wasm-opt|rust-lld|ld|cc1|cc1plus|clang|make)$/;
  return [...new Set(processes().filter((p) => names.test(p.comm)).map((p) => p.comm))];
}

function startLoadMonitor() {
  const HZ = 100; // USER_HZ, 100 on Linux
  let prev = new Map(processes().map((p) => [p.pid, p]));
  let prevT = Date.now();
  const sample = () => {
    const now = processes();
    const t = Date.now();
    const byPid = new Map(now.map((p) => [p.pid, p]));
    const ours = new Set([process.pid]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const p of now) if (!ours.has(p.pid) && ours.has(p.ppid)) ours.add(p.pid), (grew = true);
    }
    const l = (results.other_load[currentStage] ??= { wall_s: 0, cpu_s: 0, by: {} });
    l.wall_s += (t - prevT) / 1000;
    for (const p of now) {
      if (ours.has(p.pid)) continue;
      const d = (p.ticks - (prev.get(p.pid)?.ticks ?? 0)) / HZ;
      if (d > 0) {
        l.cpu_s += d;
        l.by[p.comm] = (l.by[p.comm] ?? 0) + d;
      }
    }
    l.cores = l.cpu_s / l.wall_s;
    l.top = Object.entries(l.by).sort((a, b) => b[1] - a[1]).slice(0, 4).map(([c, v]) => [c, v / l.wall_s]);
    [prev, prevT] = [byPid, t];
  };
  // The native bench runs synchronously (execFileSync), so its stage is sampled once, at its end.
  const timer = setInterval(sample, 2000);
  return { sample, stop: () => (clearInterval(timer), sample()) };
}

// ---- helpers ----

function stage(name) {
  monitor?.sample(); // close the previous stage's load figures
  currentStage = name;
}

function parseArgs(argv) {
  const o = { iters: 3, timeoutMin: 25, backends: ['cpu', 'webgpu'], out: null };
  const pos = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => (i + 1 < argv.length ? argv[++i] : die(`${a} needs a value\n${USAGE}`));
    if (a === '--iters') o.iters = int(val(), a);
    else if (a === '--timeout-min') o.timeoutMin = Number(val());
    else if (a === '--backends') o.backends = val().split(',').filter(Boolean);
    else if (a === '--out') o.out = path.resolve(val());
    else if (a === '-h' || a === '--help') (console.log(USAGE), process.exit(0));
    else if (a.startsWith('--')) die(`unknown option ${a}\n${USAGE}`);
    else pos.push(a);
  }
  if (pos.length < 1 || pos.length > 3) die(USAGE);
  if (!(o.timeoutMin > 0)) die('--timeout-min must be positive');
  if (o.backends.some((b) => !/^(auto|cpu(:(simd128|relaxed-simd))?|webgpu(:(dot4|off))?)$/.test(b)))
    die(`--backends: auto, cpu[:simd128|:relaxed-simd] or webgpu[:dot4|:off], got ${o.backends}`);
  // Relative paths are taken from the caller's directory (bench/browser.sh passes it on).
  const from = process.env.BENCH_CALLER_DIR ?? process.cwd();
  o.pack = path.resolve(from, pos[0]);
  o.image = path.relative(root, path.resolve(from, pos[1] ?? path.join(root, 'assets/chelsea.jpg')));
  o.prompt = pos[2] ?? 'a photo of a cat';
  return o;
}

function int(s, name) {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) die(`${name} must be a positive integer, got ${s}`);
  return n;
}

function note(s) {
  results.notes.push(s);
  console.log(`note: ${s}`);
}

function die(msg) {
  console.log(`bench: ${msg}`);
  process.exit(1);
}

function median(v) {
  const s = [...v].sort((a, b) => a - b);
  return s[s.length >> 1]; // as `clipseg bench`: the upper median for an even count
}

function sec(v) {
  return v === undefined || v === null ? '-' : `${v.toFixed(3)} s`;
}

function mb(v) {
  return v ? `${(v / 2 ** 20).toFixed(0)} MiB` : '-';
}

function pad(n) {
  return String(n).padStart(2, '0');
}

function quote(a) {
  return /^[\w./=-]+$/.test(a) ? a : JSON.stringify(a);
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([promise, new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`${what}: no answer in ${ms / 1000} s`)), ms)))]).finally(() => clearTimeout(t));
}
