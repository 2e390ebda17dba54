// The REST client: every read goes through get(), which adds the bearer
// token when one is stored and, on 401, asks for a token and retries.
// The token lives in sessionStorage: it is forgotten when the tab closes.

const TOKEN_KEY = 'pulse.token';
let tokenPrompt = null; // the pending prompt, shared by concurrent 401s
const tokenListeners = new Set();

export function getToken() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

function setToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token lasts until reload */ }
  for (const fn of tokenListeners) fn(t);
}

// onToken registers fn to run when the token changes (the watch stream
// reconnects with it).
export function onToken(fn) { tokenListeners.add(fn); }

export class APIError extends Error {
  constructor(status, body, path) {
    super(body && body.error ? `${body.error}${body.detail ? ': ' + body.detail : ''}` : `HTTP ${status} from ${path}`);
    this.status = status;
    this.body = body;
  }
}

// get fetches an API path ("/api/v1/services") and returns its JSON. The
// response's Date header is kept so views can tell how far the browser's
// clock is from the monitor's.
export async function get(path, { signal } = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { Accept: 'application/json' };
    const tok = getToken();
    if (tok) headers.Authorization = `Bearer ${tok}`;
    const resp = await fetch(path, { headers, signal, cache: 'no-store' });
    if (resp.status === 401 && attempt < 3) {
      await askToken(tok ? 'The token was not accepted. Enter another API token.' : 'This monitor requires an API token.');
      continue;
    }
    let body = null;
    try { body = await resp.json(); } catch { /* not JSON */ }
    if (!resp.ok) throw new APIError(resp.status, body, path);
    const date = Date.parse(resp.headers.get('Date') || '');
    if (!Number.isNaN(date)) serverClock.observe(date, Date.now());
    return body;
  }
}

// askToken opens the token dialog (once for any number of callers) and
// resolves when a token has been entered.
export function askToken(message) {
  if (tokenPrompt) return tokenPrompt;
  const dlg = document.getElementById('token-dialog');
  const form = dlg.querySelector('form');
  const input = dlg.querySelector('input');
  dlg.querySelector('.dialog-message').textContent = message;
  input.value = '';
  tokenPrompt = new Promise((resolve, reject) => {
    const finish = () => {
      form.removeEventListener('submit', done);
      dlg.removeEventListener('cancel', cancel);
      tokenPrompt = null;
    };
    const done = (ev) => {
      ev.preventDefault();
      const t = input.value.trim();
      if (!t) { input.focus(); return; }
      finish();
      dlg.close();
      setToken(t);
      resolve(t);
    };
    // Escape closes the dialog: the reads fail with 401 and say so.
    const cancel = () => {
      finish();
      reject(new APIError(401, { error: 'unauthorized', detail: 'this monitor requires an API token; reload the page to enter one' }, ''));
    };
    form.addEventListener('submit', done);
    dlg.addEventListener('cancel', cancel);
  });
  if (!dlg.open) dlg.showModal();
  input.focus();
  return tokenPrompt;
}

// forgetToken drops the stored token (the "sign out" link).
export function forgetToken() { setToken(''); }

// serverClock estimates how far the monitor's clock is from the browser's
// from HTTP Date headers (1 s resolution): the offset is only applied when
// it is larger than the header's resolution can explain.
export const serverClock = {
  offset: 0, // ms to add to Date.now() to get the monitor's time
  samples: [],
  observe(server, local) {
    // Date is truncated to the second: server time is in [date, date+1000).
    this.samples.push(server + 500 - local);
    if (this.samples.length > 20) this.samples.shift();
    const sorted = [...this.samples].sort((a, b) => a - b);
    const med = sorted[Math.floor(sorted.length / 2)];
    this.offset = Math.abs(med) > 1500 ? med : 0;
  },
  now() { return Date.now() + this.offset; },
};

// dashboard configuration served by the web handler (trace URL template).
let config = { trace_url: '' };

export async function loadConfig() {
  try {
    const resp = await fetch('dashboard.json', { cache: 'no-store' });
    if (resp.ok) config = await resp.json();
  } catch { /* keep defaults */ }
  return config;
}

// traceURL returns the trace UI link for a trace id, or '' when no
// template is configured (or it is not an http(s) URL).
export function traceURL(id) {
  const tpl = config.trace_url || '';
  if (!id || !/^https?:\/\//i.test(tpl)) return '';
  return tpl.split('{trace_id}').join(encodeURIComponent(id));
}
