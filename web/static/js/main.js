// Start-up, routing (#/..., so the page works from any base path and
// without server routes), the connection indicator and the protection
// banners shown on every view.

import { h, tickTimes, timeEl, parseTime, zoneName, hashURL } from './util.js';
import { get, loadConfig, getToken, forgetToken, onToken } from './api.js';
import { connect, onStatus, services } from './live.js';
import * as fleet from './views/fleet.js';
import * as service from './views/service.js';
import * as instance from './views/instance.js';
import * as events from './views/events.js';

const routes = [
  { re: /^\/?$/, view: fleet, nav: 'fleet', title: () => 'Fleet' },
  { re: /^\/services\/([^/?]+)$/, view: service, nav: 'fleet', params: (m) => ({ service: dec(m[1]) }), title: (p) => p.service },
  { re: /^\/services\/([^/?]+)\/instances\/([^/?]+)$/, view: instance, nav: 'fleet', params: (m) => ({ service: dec(m[1]), instance: dec(m[2]) }), title: (p) => `${p.instance} · ${p.service}` },
  { re: /^\/events$/, view: events, nav: 'events', title: () => 'Events' },
];

function dec(s) {
  try { return decodeURIComponent(s); } catch { return s; }
}

const main = document.getElementById('main');
let unmount = null;
let first = true;

function route() {
  const raw = location.hash.startsWith('#/') ? location.hash.slice(1) : '/';
  const qi = raw.indexOf('?');
  const path = qi < 0 ? raw : raw.slice(0, qi);
  const query = new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1));
  if (unmount) { unmount(); unmount = null; }
  let found = null;
  for (const r of routes) {
    const m = path.match(r.re);
    if (m) { found = { r, params: r.params ? r.params(m) : {} }; break; }
  }
  for (const a of document.querySelectorAll('header nav a')) {
    if (found && a.dataset.nav === found.r.nav) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (!found) {
    main.replaceChildren(h('h1', { tabindex: '-1' }, 'Not found'), h('p', null, 'No such page. ', h('a', { href: '#/' }, 'Back to the fleet.')));
    document.title = 'Not found · pulse';
  } else {
    document.title = `${found.r.title(found.params)} · pulse`;
    unmount = found.r.view.mount(main, found.params, query) || null;
  }
  // Move focus to the new page's heading (not on first load), so screen
  // reader and keyboard users land on the content.
  if (!first) {
    const h1 = main.querySelector('h1');
    if (h1) h1.focus({ preventScroll: false });
  }
  first = false;
}

// Banners: protection per service and zone, and the monitor's isolation.
function renderBanners(st) {
  const host = document.getElementById('banners');
  const out = [];
  const sigs = [];
  if (st.status && st.status.isolated) {
    sigs.push(`isolated/${st.status.isolation_reason}`);
    out.push(h('div', { class: 'banner isolated', dataset: { kind: 'isolated' } },
      h('strong', null, '⚠ The monitor itself looks cut off: '), st.status.isolation_reason || 'its anchors are unreachable',
      '. Verdicts are held until it can see the network again.'));
  }
  for (const sv of st.list) {
    const groups = [];
    if (sv.protected) groups.push({ label: 'whole service', zone: null, share: null, reason: sv.protection_reason, since: sv.protected_since });
    for (const z of sv.zones) {
      if (z.protected) groups.push({ label: `zone ${zoneName(z.name)}`, zone: z.name, share: z.suspect_share, reason: z.protection_reason, since: z.protected_since });
    }
    for (const g of groups) {
      const share = g.share !== null && g.share !== undefined ? `${Math.round(g.share * 100)} % suspect, ` : '';
      sigs.push([sv.name, g.label, share, g.reason, g.since].join('/'));
      const href = g.zone !== null ? hashURL(['services', sv.name], { zone: g.zone }) : hashURL(['services', sv.name]);
      out.push(h('div', { class: 'banner protection', dataset: { service: sv.name, zone: g.zone ?? '' } },
        h('p', { class: 'banner-head' },
          h('span', { class: 'sym', 'aria-hidden': 'true' }, '◆'), ' ',
          h('strong', null, `Protection on · ${sv.name} · ${g.label}: `),
          `${share}evictions paused since `, timeEl(parseTime(g.since)), ' ',
          h('a', { href }, `view ${sv.name}`)),
        h('p', { class: 'banner-reason' }, g.reason || '')));
    }
  }
  // Replace only when the content changed, so screen readers announce
  // new banners and not every refresh (relative times tick by themselves).
  const sig = sigs.join('|');
  if (host.dataset.sig !== sig) {
    host.dataset.sig = sig;
    host.replaceChildren(...out);
  }
}

function renderConn(state) {
  const e = document.getElementById('conn');
  const text = { live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…', offline: 'offline, retrying' }[state] || state;
  e.className = `conn conn-${state}`;
  e.dataset.state = state;
  e.replaceChildren(h('span', { class: 'dot', 'aria-hidden': 'true' }), ` ${text}`);
}

function renderTokenLink() {
  const host = document.getElementById('token-link');
  host.replaceChildren();
  if (getToken()) {
    const b = h('button', { type: 'button', class: 'link' }, 'Forget the API token');
    b.addEventListener('click', () => { forgetToken(); location.reload(); });
    host.append(b);
  }
}

async function start() {
  renderConn('connecting');
  onStatus(renderConn);
  await loadConfig();
  let lastSeq;
  try {
    const st = await get('api/v1/status');
    lastSeq = st.last_seq;
  } catch (e) {
    main.replaceChildren(h('h1', null, 'pulse'), h('p', { class: 'error', role: 'alert' }, `Could not read the monitor's status: ${e.message}.`));
  }
  renderTokenLink();
  onToken(renderTokenLink);
  // Watch first, from the sequence the first reads are at, so nothing
  // that happens while the views load is missed.
  connect(lastSeq);
  services.on(renderBanners);
  await services.load();
  route();
  window.addEventListener('hashchange', route);
  setInterval(() => tickTimes(), 1000);
  const skip = document.querySelector('.skip');
  skip.addEventListener('click', (e) => { e.preventDefault(); const h1 = main.querySelector('h1'); (h1 || main).focus(); });
}

start();
