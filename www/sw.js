// Service worker of the demo page, for visits without network: the page's files, the wasm
// engine and the sample photos are answered from the network when it is there (so a changed
// file shows up at once) and from a cache otherwise. Model packs are not handled here:
// pack-cache.js keeps them, verified, in their own cache.
const CACHE = 'clipseg-shell-v1';
// Stored at install time: the first visit's own requests happen before this worker controls
// the page, so they would not be cached otherwise.
const SHELL = [
  './index.html', './app.js', './style.css', './masks.js', './pack-cache.js', './clipseg-client.js', './worker.js',
  '../pkg/clipseg.js', '../pkg/clipseg_bg.wasm',
  '../assets/chelsea.jpg', '../assets/coffee.jpg', '../assets/astronaut.jpg',
];

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== location.origin || /\.(bpk|sha256)$/.test(url.pathname)) return;
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
