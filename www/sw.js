// Service worker of the demo page, for visits without network: the page's files, the wasm
// engine and the sample photos are answered from the network when it is there (so a changed
// file shows up at once) and from a cache otherwise. Model packs (and split packs' parts and
// manifests) are not handled here: pkg/pack-cache.js keeps them, verified, in their own cache.
const CACHE = 'clipseg-shell-v1';
// Stored at install time: the first visit's own requests happen before this worker controls
// the page, so they would not be cached otherwise.
const SHELL = [
  './index.html', './app.js', './style.css',
  '../pkg/masks.js', '../pkg/pack-cache.js', '../pkg/clipseg-client.js', '../pkg/worker.js',
  '../assets/chelsea.jpg', '../assets/coffee.jpg', '../assets/astronaut.jpg',
  // The engine build pkg/worker.js will pick: relaxed SIMD where this browser validates it.
  ...(WebAssembly.validate(new Uint8Array([
    0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 19, 1, 17, 0,
    65, 0, 253, 15, 65, 0, 253, 15, 65, 0, 253, 17, 253, 147, 2, 11, // worker.js's probe
  ])) ? ['../pkg/clipseg_relaxed.js', '../pkg/clipseg_relaxed_bg.wasm'] : ['../pkg/clipseg.js', '../pkg/clipseg_bg.wasm']),
];

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== location.origin || /\.bpk(\.\d+|\.json)?$|\.sha256$/.test(url.pathname)) return;
  e.respondWith(
    fetch(e.request)
      .then((res) => {
        if (res.ok) {
          const copy = res.clone();
          e.waitUntil(caches.open(CACHE).then((c) => c.put(e.request, copy)));
        }
        return res;
      })
      .catch(async () => (await caches.match(e.request, { ignoreSearch: true })) ?? Response.error()),
  );
});
