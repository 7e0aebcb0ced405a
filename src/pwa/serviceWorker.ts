// The app shell's service worker: it keeps the page, its scripts, styles and ORT's wasm in a cache of their own so
// the app opens without a network once it has been loaded, and answers nothing else — model weights are
// downloaded with Range requests into IndexedDB by the worker and never pass through this cache, so clearing one
// never touches the other. The build (scripts/serviceWorkerPlugin.ts) fills in the list of files and a version.

/// <reference lib="webworker" />
declare const self: ServiceWorkerGlobalScope;
/** Files of this build, relative to the service worker's folder. */
declare const __PRECACHE__: string[];
declare const __VERSION__: string;

const PREFIX = 'framepack-shell-';
const CACHE = `${PREFIX}${__VERSION__}`;
const scope = new URL('./', self.location.href);
const shell = new Set(__PRECACHE__.map((f) => new URL(f, scope).href));
const INDEX = new URL('./', scope).href;

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll([...shell]);
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key.startsWith(PREFIX) && key !== CACHE) await caches.delete(key);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || request.headers.has('range')) return;
  const url = new URL(request.url);
  if (url.origin !== scope.origin) return;
  if (request.mode === 'navigate') {
    // The network first, so a new version shows at once; the cached page when offline.
    event.respondWith(fetch(request).catch(async () => (await caches.match(INDEX, { ignoreSearch: true })) ?? Response.error()));
    return;
  }
  url.search = '';
  if (!shell.has(url.href)) return; // weights and anything else: straight to the network
  event.respondWith((async () => (await caches.match(url.href)) ?? fetch(request))());
});

export {}; // a module: its `self` is the service worker's, not the page's
