// pingedchat's service worker: keeps the app shell (the page, its style sheet and scripts, the
// vendored libraries and the icon) in a cache of its own version, so that the app opens at once
// and without a network; the messages themselves are in IndexedDB (store.js).
//
// Updates: the server stamps VERSION with a hash of every file of the client (web.go), so any
// change to the client is a new worker. The browser checks this file on every load (it is
// served with no-cache); a new version first caches the whole new shell, then takes over. A page
// already open keeps running on the files it loaded, and the next load is the new version
// throughout; caches of older versions are deleted then. If the new shell cannot be cached
// whole, the new version is not installed and the old one keeps serving.
//
// Only the shell is served from the cache; every other request (the socket, uploads, the
// server's other pages) goes to the network untouched.

/* eslint-env serviceworker */

const VERSION = 'dev';
const PREFIX = 'pingedchat-shell-';
const CACHE = PREFIX + VERSION;

const SHELL = [
  './',
  'style.css',
  'icon.svg',
  'vendor/sockjs.min.js',
  'vendor/lokijs.min.js',
  'vendor/loki-indexed-adapter.js',
  'vendor/incremental-indexeddb-adapter.js',
  'js/actions.js',
  'js/app.js',
  'js/bots.js',
  'js/chat.js',
  'js/conn.js',
  'js/contacts.js',
  'js/convolist.js',
  'js/dialogs.js',
  'js/events.js',
  'js/files.js',
  'js/friends.js',
  'js/mail.js',
  'js/mailcompose.js',
  'js/messages.js',
  'js/notify.js',
  'js/schedule.js',
  'js/search.js',
  'js/settings.js',
  'js/store.js',
  'js/util.js',
];

const BASE = new URL('./', self.location).href;
const PAGE = new URL('./', BASE).href;
const SHELL_URLS = new Set(SHELL.map((p) => new URL(p, BASE).href));

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // Revalidated, not taken blindly from the HTTP cache: a stale file must not be cached
    // under the new version.
    await cache.addAll(SHELL.map((p) => new Request(new URL(p, BASE), {cache: 'no-cache'})));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith(PREFIX) && key !== CACHE) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  url.hash = '';
  if (req.mode === 'navigate') {
    // The page, whatever its query (?transports=…): from the cache.
    url.search = '';
    if (url.href === PAGE || url.href === new URL('index.html', BASE).href) event.respondWith(fromCache(PAGE, req));
    return;
  }
  if (url.search === '' && SHELL_URLS.has(url.href)) event.respondWith(fromCache(url.href, req));
});

// A push from the server (push_webpush.go: {title, body, CID, sender, kind}), for a message that
// arrived while this user had no page open: shown as a notification (plain text, as all
// notifications are), tagged by conversation so that a newer message replaces an older one.
self.addEventListener('push', (event) => {
  let d = {};
  try {
    d = event.data ? event.data.json() : {};
  } catch {
    d = {body: event.data ? event.data.text() : ''};
  }
  const cid = typeof d.CID === 'string' ? d.CID : '';
  const title = typeof d.title === 'string' && d.title ? d.title : 'pingedchat';
  const body = typeof d.body === 'string' ? d.body : '';
  event.waitUntil(self.registration.showNotification(title, {
    body, tag: `pingedchat-${cid}`, renotify: true, icon: 'icon.svg', data: {cid},
  }));
});

// A notification (notify.js, or a push) was clicked: to the app's tab, which opens the
// conversation; or, with none open, a new one at that conversation (#c=<CID>, app.js).
self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const data = event.notification.data || {};
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({type: 'window', includeUncontrolled: true});
    const win = windows.find((c) => c.url.startsWith(BASE));
    if (!win) {
      await self.clients.openWindow(typeof data.cid === 'string' && data.cid ? `${PAGE}#c=${encodeURIComponent(data.cid)}` : PAGE);
      return;
    }
    await win.focus();
    if (typeof data.cid === 'string') win.postMessage({type: 'pingedchat-open', cid: data.cid});
  })());
});

/** fromCache answers from this version's cache, or from the network if it is missing there
 * (e.g. the cache was cleared by the browser). */
async function fromCache(key, req) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(key);
  if (hit) return hit;
  return fetch(req);
}
