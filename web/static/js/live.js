// The live layer: one EventSource on /api/v1/watch for the whole page and
// a shared copy of the service list. EventSource reconnects by itself and
// resumes with Last-Event-ID; when the stream is closed for good (an error
// status, a token change) it is reopened here with after=<last id>, so no
// event is lost either way.

import { get, getToken, askToken, onToken } from './api.js';
import { throttle } from './util.js';

const listeners = new Set();
const statusListeners = new Set();
let es = null;
let lastId = '';
let retry = 0;
let retryTimer = null;
let state = 'connecting';

// subscribe registers fn(type, event) for every watch event; it returns
// the function that unsubscribes.
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function onStatus(fn) {
  statusListeners.add(fn);
  fn(state);
}

function setState(s) {
  state = s;
  for (const fn of statusListeners) fn(s);
}

function dispatch(type, ev) {
  for (const fn of listeners) {
    try { fn(type, ev); } catch (e) { console.error(e); }
  }
}

// connect opens the stream after the given sequence number (the
// last_seq the first REST reads were consistent with).
export function connect(after) {
  if (after !== undefined && after !== null) lastId = String(after);
  open();
  onToken(() => { close(); open(); });
}

function open() {
  clearTimeout(retryTimer);
  const u = new URL('api/v1/watch', document.baseURI);
  if (lastId) u.searchParams.set('after', lastId);
  const tok = getToken();
  if (tok) u.searchParams.set('access_token', tok);
  es = new EventSource(u);
  es.onopen = () => { retry = 0; setState('live'); };
  es.onerror = () => {
    if (es && es.readyState === EventSource.CLOSED) {
      setState('offline');
      reopenLater();
    } else {
      setState('reconnecting');
    }
  };
  for (const type of ['transition', 'protection', 'config', 'notice']) {
    es.addEventListener(type, (m) => {
      if (m.lastEventId) lastId = m.lastEventId;
      let ev;
      try { ev = JSON.parse(m.data); } catch { return; }
      dispatch(type, ev);
    });
  }
  // The monitor could not fill a gap (events aged out with no store):
  // views must re-list; resume from now.
  es.addEventListener('reset', () => {
    lastId = '';
    dispatch('reset', null);
    services.refresh();
  });
  es.addEventListener('shutdown', () => setState('reconnecting'));
}

function close() {
  if (es) { es.close(); es = null; }
}

// reopenLater retries a closed stream with capped, jittered back-off; a
// 401 from the status endpoint means the token is missing or wrong.
function reopenLater() {
  close();
  const delay = Math.min(30000, 1000 * 2 ** retry) * (0.5 + Math.random() / 2);
  retry = Math.min(retry + 1, 5);
  retryTimer = setTimeout(async () => {
    try {
      const st = await fetch('api/v1/status', { headers: getToken() ? { Authorization: `Bearer ${getToken()}` } : {}, cache: 'no-store' });
      if (st.status === 401) {
        try {
          await askToken('This monitor requires an API token.');
        } catch {
          reopenLater(); // dismissed: ask again later
        }
        return; // a new token reopens the stream (onToken)
      }
    } catch { /* monitor unreachable: try the stream anyway */ }
    open();
  }, delay);
}

// services is the shared service list (GET /api/v1/services), refreshed
// on watch events (throttled) and every 5 s (suspect shares and protection
// change between events too), plus the monitor's own status.
export const services = {
  list: [],
  status: null,
  loaded: false,
  error: null,
  listeners: new Set(),
  on(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); },
  async load() {
    try {
      const [svc, st] = await Promise.all([get('api/v1/services'), get('api/v1/status')]);
      this.list = svc.services || [];
      this.status = st;
      this.loaded = true;
      this.error = null;
    } catch (e) {
      this.error = e;
    }
    for (const fn of this.listeners) {
      try { fn(this); } catch (e) { console.error(e); }
    }
  },
  refresh: null,
};
services.refresh = throttle(() => services.load(), 400);

subscribe((type) => {
  if (type === 'transition' || type === 'protection' || type === 'config' || type === 'reset') services.refresh();
});
setInterval(() => services.refresh(), 5000);
