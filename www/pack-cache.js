// Model packs in Cache Storage, keyed by the pack's absolute URL, checked against the
// `URL.sha256` file beside the pack (sha256sum format). The cached response carries the digest
// it was verified with in a header, so a visit without network still checks the bytes.
//
// Cache Storage and crypto.subtle only exist in secure contexts (https, localhost): elsewhere
// the pack is downloaded on every visit and checked only by the engine's own header checksum.

const CACHE = 'clipseg-packs-v1';
const SHA_HEADER = 'x-clipseg-sha256';
const hasCache = typeof caches !== 'undefined';
const hasDigest = typeof crypto !== 'undefined' && !!crypto.subtle;

const absolute = (url) => new URL(url, location.href).href;

// Resolves {bytes: Uint8Array, from: 'cache'|'network', notes: string[]}. onProgress(loaded,
// total) while downloading (total 0 if unknown); onStage(text) for the other steps.
export async function getPack(url, { onProgress, onStage } = {}) {
  url = absolute(url);
  const notes = [];
  if (!hasCache) notes.push('not cached: Cache Storage needs https or localhost');

  onStage?.('checking the pack’s checksum file');
  const expected = await expectedSha(url);
  if (expected.note) notes.push(expected.note);

  const cache = hasCache ? await caches.open(CACHE) : null;
  const hit = await cache?.match(url);
  // A cached pack is used when it matches the published digest, or when there is none to
  // compare with (offline); a stale one (the file on the server changed) is downloaded again.
  if (hit && (!expected.sha || hit.headers.get(SHA_HEADER) === expected.sha)) {
    onStage?.('reading the cached pack');
    const bytes = new Uint8Array(await hit.arrayBuffer());
    onProgress?.(bytes.length, bytes.length);
    const want = hit.headers.get(SHA_HEADER);
    if (!hasDigest || !want || (await sha256(bytes)) === want) return { bytes, from: 'cache', notes };
    notes.push('the cached copy was damaged and has been downloaded again');
    await cache.delete(url);
  }

  const bytes = await download(url, onProgress);
  let digest = '';
  if (hasDigest) {
    onStage?.('verifying sha256');
    digest = await sha256(bytes);
    if (expected.sha && digest !== expected.sha)
      throw new Error(`${url}: sha256 is ${digest.slice(0, 12)}…, the .sha256 file says ${expected.sha.slice(0, 12)}…; incomplete or replaced download, not used`);
  } else {
    notes.push('not verified: crypto.subtle needs https or localhost');
  }
  if (cache) {
    try {
      const headers = { 'content-type': 'application/octet-stream', [SHA_HEADER]: digest };
      await cache.put(url, new Response(bytes, { headers }));
    } catch (e) {
      notes.push(`not cached: ${e.message}`); // e.g. over the storage quota
    }
  }
  return { bytes, from: 'network', notes };
}

// Resolves the number of packs removed.
export async function clearCache() {
  if (!hasCache) return 0;
  const n = (await (await caches.open(CACHE)).keys()).length;
  await caches.delete(CACHE);
  return n;
}

// {sha} from URL.sha256, or {note} saying why there is none (offline, no such file).
async function expectedSha(url) {
  let res;
  try {
    res = await fetch(`${url}.sha256`, { cache: 'no-cache' });
  } catch {
    return { note: 'offline: using the cached pack as verified when it was stored' };
  }
  if (!res.ok) return { note: `no checksum file (${url.split('/').pop()}.sha256: HTTP ${res.status}); only the engine’s internal checksum applies` };
  const sha = (await res.text()).trim().slice(0, 64).toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(sha)) throw new Error(`${url}.sha256 does not start with a sha256 hex digest`);
  return { sha };
}

async function download(url, onProgress) {
  const res = await fetch(url, { cache: 'no-cache' });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get('content-length')) || 0;
  const chunks = [];
  let loaded = 0;
  for (const reader = res.body.getReader(); ; ) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    onProgress?.(loaded, total);
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return bytes;
}

async function sha256(bytes) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}
