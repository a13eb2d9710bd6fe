// Model packs in Cache Storage, verified. Two kinds of URL:
// - a pack (.bpk): keyed by its absolute URL, checked against the `URL.sha256` file beside it
//   (sha256sum format);
// - a split pack's manifest (.json, `clipseg convert --split`): the parts it names (relative to
//   it) are downloaded a few at a time, each checked against the manifest's size and sha256 and
//   cached on its own, so an interrupted download resumes at the parts still missing.
// Cached responses carry the digest they were verified with in a header, so a visit without
// network still checks the bytes. Works in a page and in a worker.
//
// Cache Storage and crypto.subtle only exist in secure contexts (https, localhost): elsewhere
// packs are downloaded on every visit and checked only by sizes and the engine's own checksum.

const CACHE = 'clipseg-packs-v1';
const SHA_HEADER = 'x-clipseg-sha256';
const PARALLEL = 4; // parts downloading at once
const MAX_PACK = 2 ** 31; // bytes: more than any real pack, less than a browser can hold twice
const hasCache = typeof caches !== 'undefined';
const hasDigest = typeof crypto !== 'undefined' && !!crypto.subtle;

const absolute = (url) => new URL(url, self.location.href).href;
const fileName = (url) => new URL(url).pathname.split('/').pop();

// Resolves {bytes: Uint8Array, from: 'cache'|'network', verified, notes: string[]}: verified
// when every byte matched a published sha256 (the .sha256 file, the manifest's part digests).
// onProgress(loaded, total) while downloading (total 0 if unknown); onStage(text) for the other
// steps.
export async function getPack(url, { onProgress, onStage } = {}) {
  url = absolute(url);
  const notes = [];
  if (!hasCache) notes.push('not cached: Cache Storage needs https or localhost');
  if (!hasDigest) notes.push('not verified: crypto.subtle needs https or localhost');
  const cache = hasCache ? await caches.open(CACHE) : null;
  const got = new URL(url).pathname.endsWith('.json')
    ? await splitPack(url, cache, notes, onProgress, onStage)
    : await wholePack(url, cache, notes, onProgress, onStage);
  return { ...got, notes };
}

// Resolves the number of packs and parts removed.
export async function clearCache() {
  if (!hasCache) return 0;
  const n = (await (await caches.open(CACHE)).keys()).length;
  await caches.delete(CACHE);
  return n;
}

// ------------------------------------------------------------------ one-file packs

async function wholePack(url, cache, notes, onProgress, onStage) {
  onStage?.('checking the pack’s checksum file');
  const expected = await expectedSha(url);
  if (expected.note) notes.push(expected.note);
  // A cached pack is used when it matches the published digest, or when there is none to
  // compare with (offline); a stale one (the file on the server changed) is downloaded again.
  const hit = await cache?.match(url);
  if (hit && (!expected.sha || hit.headers.get(SHA_HEADER) === expected.sha)) {
    onStage?.('reading the cached pack');
    const bytes = await verifiedHit(hit);
    if (bytes) {
      onProgress?.(bytes.length, bytes.length);
      return { bytes, from: 'cache', verified: hasDigest && !!expected.sha };
    }
    notes.push('the cached copy was damaged and has been downloaded again');
    await cache.delete(url);
  }

  const res = await reach(url);
  const total = Number(res.headers.get('content-length')) || 0;
  // Content-Length is only for progress: it counts compressed bytes where the server gzips.
  const bytes = await readBody(res, 0, (n) => onProgress?.(n, total));
  let digest = '';
  if (hasDigest) {
    onStage?.('verifying sha256');
    digest = await sha256(bytes);
    if (expected.sha && digest !== expected.sha)
      throw new Error(`${url}: sha256 is ${digest.slice(0, 12)}…, the .sha256 file says ${expected.sha.slice(0, 12)}…; incomplete or replaced download, not used`);
  }
  await store(cache, url, bytes, digest, notes);
  return { bytes, from: 'network', verified: hasDigest && !!expected.sha };
}

// {sha} from URL.sha256, or {note} saying why there is none (offline, no such file).
async function expectedSha(url) {
  let res;
  try {
    res = await fetch(`${url}.sha256`, { cache: 'no-cache' });
  } catch {
    return { note: 'offline: using the cached pack as verified when it was stored' };
  }
  if (!res.ok) return { note: `no checksum file (${fileName(url)}.sha256: HTTP ${res.status}); only the engine’s internal checksum applies` };
  const sha = (await res.text()).trim().slice(0, 64).toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(sha)) throw new Error(`${url}.sha256 does not start with a sha256 hex digest`);
  return { sha };
}

// ------------------------------------------------------------------ split packs

async function splitPack(url, cache, notes, onProgress, onStage) {
  onStage?.('reading the split pack’s manifest');
  let text;
  try {
    const res = await reach(url, { cache: 'no-cache' });
    text = await res.text();
    await store(cache, url, new TextEncoder().encode(text), '', notes);
  } catch (e) {
    const hit = await cache?.match(url);
    if (!hit) throw e;
    notes.push(`using the cached manifest (${e.message})`);
    text = await hit.text();
  }
  const manifest = parseManifest(url, text);
  const { parts, size } = manifest;
  const bytes = new Uint8Array(size);
  let end = 0;
  const offsets = parts.map((p) => (end += p.size) - p.size);
  const label = (i) => `part ${i + 1} of ${parts.length} (${parts[i].file})`;
  const partUrl = (i) => new URL(parts[i].file, url).href;

  // Parts already cached and intact first; the rest are downloaded.
  onStage?.('reading the cached parts');
  const missing = [];
  let loaded = 0;
  for (let i = 0; i < parts.length; i++) {
    const hit = await cache?.match(partUrl(i));
    const data = hit && hit.headers.get(SHA_HEADER) === parts[i].sha256 ? await verifiedHit(hit) : null;
    if (data && data.length === parts[i].size) {
      bytes.set(data, offsets[i]);
      loaded += data.length;
    } else {
      missing.push(i);
    }
  }
  onProgress?.(loaded, size);
  if (!missing.length) return { bytes, from: 'cache', verified: hasDigest };
  if (missing.length < parts.length) notes.push(`${parts.length - missing.length} of ${parts.length} parts were cached`);

  // PARALLEL downloads at a time; after a failure no new one starts, the running ones finish
  // (and are cached), then the first error is thrown: the next load fetches only the rest.
  const inFlight = new Map(); // part index → bytes received so far
  const progress = () => onProgress?.(loaded + [...inFlight.values()].reduce((a, b) => a + b, 0), size);
  let failure = null;
  const next = missing[Symbol.iterator]();
  async function lane() {
    for (let it = next.next(); !it.done && !failure; it = next.next()) {
      const i = it.value, part = parts[i];
      inFlight.set(i, 0);
      try {
        const res = await reach(partUrl(i), {}, label(i));
        const data = await readBody(res, part.size, (n) => (inFlight.set(i, n), progress()), label(i));
        if (data.length !== part.size) throw new Error(`${label(i)}: ${data.length} bytes, the manifest says ${part.size} (incomplete download, or a part of another pack)`);
        if (hasDigest && (await sha256(data)) !== part.sha256) throw new Error(`${label(i)}: sha256 differs from the manifest’s: damaged download or a part of another pack, not used`);
        bytes.set(data, offsets[i]);
        await store(cache, partUrl(i), data, part.sha256, notes);
        loaded += data.length;
      } catch (e) {
        failure ??= e;
      } finally {
        inFlight.delete(i);
        progress();
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(PARALLEL, missing.length) }, lane));
  if (failure) throw failure;
  return { bytes, from: 'network', verified: hasDigest };
}

// The manifest checked as the native reader checks it (src/weights/pack/split.rs).
function parseManifest(url, text) {
  const bad = (why) => new Error(`${url}: not a split-pack manifest: ${why}`);
  let m;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw bad(e.message);
  }
  if (m?.format !== 'clipseg-split') throw bad('format is not "clipseg-split"');
  if (m.version !== 1) throw bad(`version ${m.version}, but this engine reads version 1; split the pack again with this version’s clipseg convert --split`);
  if (!Array.isArray(m.parts) || !m.parts.length || m.parts.length > 10_000) throw bad('it needs 1 to 10000 parts');
  let sum = 0;
  for (const p of m.parts) {
    if (typeof p?.file !== 'string' || !/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(p.file)) throw bad(`part name ${JSON.stringify(p?.file)} is not a plain file name`);
    if (!Number.isSafeInteger(p.size) || p.size < 0) throw bad(`part ${p.file}: size is not a byte count`);
    if (typeof p.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(p.sha256)) throw bad(`part ${p.file}: sha256 is not 64 hex digits`);
    sum += p.size;
  }
  if (sum !== m.size) throw bad(`the parts hold ${sum} bytes but the manifest says ${m.size}`);
  if (sum > MAX_PACK) throw bad(`${sum} bytes is more than a browser can load`);
  return m;
}

// ------------------------------------------------------------------ shared

// fetch that fails with a reason a person can act on: HTTP status, CORS, or unreachable.
async function reach(url, init = {}, what = url) {
  let res;
  try {
    res = await fetch(url, { cache: 'no-cache', ...init });
  } catch {
    throw new Error(await whyUnreachable(url, what));
  }
  if (!res.ok) throw new Error(`${what}: HTTP ${res.status} ${res.statusText}`.trim());
  return res;
}

// A fetch that failed without an answer: from another origin, a request that can't be read
// (mode no-cors, HEAD: nothing is downloaded) tells CORS from an unreachable server.
async function whyUnreachable(url, what) {
  if (new URL(url).origin !== self.location.origin) {
    try {
      await fetch(url, { mode: 'no-cors', method: 'HEAD', cache: 'no-store' });
      return `${what}: the server at ${new URL(url).origin} does not allow this page to read it (CORS: it must send Access-Control-Allow-Origin for ${self.location.origin})`;
    } catch {}
  }
  return `${what}: could not be fetched (offline, the server is unreachable, or this page’s Content-Security-Policy connect-src does not allow ${new URL(url).origin})`;
}

// The body as one array; onBytes(received) as it arrives. More than `expected` bytes (unless 0)
// is an error: a server answering with something else must not fill memory.
async function readBody(res, expected, onBytes, what = res.url) {
  const chunks = [];
  let loaded = 0, last = 0;
  try {
    for (const reader = res.body.getReader(); ; ) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      loaded += value.length;
      if (expected && loaded > expected) throw new Error(`${what}: more than the ${expected} bytes expected`);
      if (loaded > MAX_PACK) throw new Error(`${what}: larger than any pack`);
      if (performance.now() - last > 50) (onBytes(loaded), (last = performance.now()));
    }
  } catch (e) {
    if (e.message.startsWith(what)) throw e;
    throw new Error(`${what}: the download broke off after ${loaded} bytes (${e.message})`);
  }
  onBytes(loaded);
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) (bytes.set(c, at), (at += c.length));
  return bytes;
}

// A cached response's bytes if they still match the digest stored with them (or there is
// nothing to check them with); null if damaged.
async function verifiedHit(hit) {
  const bytes = new Uint8Array(await hit.arrayBuffer());
  const want = hit.headers.get(SHA_HEADER);
  return !hasDigest || !want || (await sha256(bytes)) === want ? bytes : null;
}

async function store(cache, url, bytes, digest, notes) {
  if (!cache) return;
  try {
    await cache.put(url, new Response(bytes, { headers: { 'content-type': 'application/octet-stream', [SHA_HEADER]: digest } }));
  } catch (e) {
    if (!notes.some((n) => n.startsWith('not cached'))) notes.push(`not cached: ${e.message}`); // e.g. over the storage quota
  }
}

async function sha256(bytes) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}
