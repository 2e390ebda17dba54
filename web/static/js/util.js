// DOM building and formatting shared by every view. Text always goes in
// through textContent (never innerHTML), so names and reasons sent by
// instances cannot inject markup.

// h builds an element: h('a', {href: '#/', class: 'x', onclick: fn}, 'text', child).
// Attributes whose value is null, undefined or false are left out.
export function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  setAttrs(e, attrs);
  append(e, children);
  return e;
}

// s builds an SVG element.
export function s(tag, attrs, ...children) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  setAttrs(e, attrs);
  append(e, children);
  return e;
}

function setAttrs(e, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      e.addEventListener(k.slice(2), v);
    } else if (k === 'dataset') {
      for (const [dk, dv] of Object.entries(v)) e.dataset[dk] = String(dv);
    } else {
      e.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

function append(e, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
}

// The states, most severe first, with the symbol shown next to every
// state name (colour is never the only cue).
export const STATES = ['down', 'suspect', 'protected', 'degraded', 'unknown', 'alive'];
export const STATE_ORDER = ['alive', 'suspect', 'protected', 'degraded', 'down', 'unknown'];
const SYMBOL = { alive: '✓', suspect: '?', protected: '◆', degraded: '▲', down: '✕', unknown: '–', left: '←' };

export function severity(state) {
  const i = STATES.indexOf(state);
  return i < 0 ? STATES.length : i;
}

// badge renders a state as symbol + name on the state's colour.
export function badge(state, extra) {
  return h('span', { class: `badge s-${state}`, dataset: { state } },
    h('span', { class: 'sym', 'aria-hidden': 'true' }, SYMBOL[state] || '•'), ' ', state, extra ? ` ${extra}` : '');
}

export function symbol(state) { return SYMBOL[state] || '•'; }

// fmtDur formats nanoseconds: 850 µs, 212 ms, 4.1 s, 3m 20s, 2h 05m.
export function fmtDur(ns) {
  if (ns === null || ns === undefined || Number.isNaN(ns)) return '—';
  const neg = ns < 0;
  let v = Math.abs(ns);
  let out;
  if (v < 1e3) out = `${Math.round(v)} ns`;
  else if (v < 1e6) out = `${trim(v / 1e3)} µs`;
  else if (v < 1e9) out = `${trim(v / 1e6)} ms`;
  else if (v < 60e9) out = `${trim(v / 1e9)} s`;
  else {
    const sec = Math.floor(v / 1e9);
    if (sec < 3600) out = `${Math.floor(sec / 60)}m ${pad(sec % 60)}s`;
    else if (sec < 86400) out = `${Math.floor(sec / 3600)}h ${pad(Math.floor(sec / 60) % 60)}m`;
    else out = `${Math.floor(sec / 86400)}d ${Math.floor(sec / 3600) % 24}h`;
  }
  return neg ? `−${out}` : out;
}

export function fmtMs(ms) { return fmtDur(ms * 1e6); }

function trim(x) {
  return x >= 100 ? String(Math.round(x)) : x >= 10 ? x.toFixed(1).replace(/\.0$/, '') : x.toFixed(2).replace(/\.?0+$/, '');
}

function pad(n) { return String(n).padStart(2, '0'); }

// parseTime returns ms since the epoch, or null for a zero/absent time.
export function parseTime(t) {
  if (!t || t.startsWith('0001-')) return null;
  // Go writes up to nine fractional digits; Date.parse is only specified
  // for three.
  const v = Date.parse(t.replace(/(\.\d{3})\d+/, '$1'));
  return Number.isNaN(v) ? null : v;
}

// fmtClock: 12:01:07 today, "25 Nov 12:01:07" otherwise (local time).
export function fmtClock(ms) {
  if (ms === null || ms === undefined) return '—';
  const d = new Date(ms);
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return hms;
  return `${d.getDate()} ${d.toLocaleString('en', { month: 'short' })} ${hms}`;
}

// ago formats how long ago ms was: "4.1 s ago", "3m 20s ago".
export function ago(ms, now = Date.now()) {
  if (ms === null || ms === undefined) return '—';
  const d = now - ms;
  if (d < 0) return `in ${fmtDur(-d * 1e6)}`;
  if (d < 1000) return `${Math.round(d)} ms ago`;
  if (d < 60000) return `${(d / 1000).toFixed(1)} s ago`;
  return `${fmtDur(d * 1e6)} ago`;
}

// timeEl renders an instant as a <time> that the 1 s ticker keeps
// current: relative ("3m 20s ago") with the clock time beside it, or the
// clock time alone when relative is false.
// With clockFirst the clock time leads ("12:01:07 (3m 20s ago)"), as
// logs read best.
export function timeEl(ms, { relative = true, clock = true, clockFirst = false } = {}) {
  if (ms === null || ms === undefined) return h('span', { class: 'muted' }, '—');
  const iso = new Date(ms).toISOString();
  const e = h('time', { datetime: iso, title: new Date(ms).toString() });
  if (relative) {
    e.dataset.rel = String(ms);
    e.dataset.fmt = clockFirst ? 'clock-first' : clock ? 'rel-clock' : 'rel';
    e.textContent = relText(ms, e.dataset.fmt, Date.now());
  } else {
    e.textContent = fmtClock(ms);
  }
  return e;
}

function relText(ms, fmt, now) {
  if (fmt === 'clock-first') return `${fmtClock(ms)} (${ago(ms, now)})`;
  if (fmt === 'rel-clock') return `${ago(ms, now)} (${fmtClock(ms)})`;
  return ago(ms, now);
}

// tickTimes refreshes every relative <time> under root.
export function tickTimes(root = document) {
  const now = Date.now();
  for (const e of root.querySelectorAll('time[data-rel]')) {
    e.textContent = relText(Number(e.dataset.rel), e.dataset.fmt, now);
  }
}

export function zoneName(z) { return z === '' ? '(no zone)' : z; }

// throttle runs fn at most once per wait ms, trailing call included; calls
// that come while fn's promise is pending run once after it.
export function throttle(fn, wait) {
  let timer = null, running = false, again = false, last = 0;
  const run = async () => {
    timer = null;
    if (running) { again = true; return; }
    running = true;
    last = Date.now();
    try { await fn(); } catch (e) { console.error(e); }
    running = false;
    if (again) { again = false; schedule(); }
  };
  const schedule = () => {
    if (timer) return;
    timer = setTimeout(run, Math.max(0, wait - (Date.now() - last)));
  };
  schedule.cancel = () => { clearTimeout(timer); timer = null; again = false; };
  return schedule;
}

// debounce runs fn wait ms after the last call.
export function debounce(fn, wait) {
  let timer = null;
  const d = (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), wait); };
  d.cancel = () => clearTimeout(timer);
  return d;
}

// hashURL builds "#/path?query" from path parts and a params object.
export function hashURL(parts, params) {
  const path = '#/' + parts.map(encodeURIComponent).join('/');
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== '' && v !== null && v !== undefined && !(Array.isArray(v) && v.length === 0)) q.set(k, Array.isArray(v) ? v.join(',') : v);
  }
  const qs = q.toString();
  return qs ? `${path}?${qs}` : path;
}

// wrapTable puts a wide table in a region that scrolls sideways and can be
// focused, so a keyboard user can scroll it too.
export function wrapTable(table, label) {
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': label, tabindex: '0' }, table);
}

// keepFocus runs render (which rebuilds host's content) and puts keyboard
// focus back on the equivalent element, so live refreshes never throw a
// keyboard user back to the top of the page. Elements are matched by
// data-key, else by link target and text.
export function keepFocus(host, render) {
  const a = document.activeElement;
  const inside = a && a !== host && host.contains(a);
  const key = inside ? a.dataset.key : null;
  const href = inside ? a.getAttribute('href') : null;
  const text = inside ? a.textContent : null;
  render();
  if (!inside || host.contains(a)) return;
  let e = null;
  if (key) e = host.querySelector(`[data-key="${CSS.escape(key)}"]`);
  else if (href) e = [...host.querySelectorAll('a[href]')].find((x) => x.getAttribute('href') === href && x.textContent === text);
  else if (a.classList.contains('table-wrap')) e = host.querySelector('.table-wrap');
  if (e) e.focus({ preventScroll: true });
}
