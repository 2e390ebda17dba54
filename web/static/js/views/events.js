// Events: the transition log from the store, newest first, paged
// backwards in time, with new events prepended live from the watch stream.

import { h, STATE_ORDER, hashURL, wrapTable, debounce, parseTime } from '../util.js';
import { get } from '../api.js';
import { services, subscribe } from '../live.js';
import { eventsTable, errorNote, note } from './common.js';

const PAGE = 100;
const SINCE = [['', 'any time'], ['15m', 'last 15 minutes'], ['1h', 'last hour'], ['6h', 'last 6 hours'], ['24h', 'last 24 hours'], ['168h', 'last 7 days']];
const TO = [['', 'any change'], ...STATE_ORDER.map((s) => [s, `to ${s}`]), ['left', 'to left'], ['protection_on', 'protection on'], ['protection_off', 'protection off']];
const SOURCES = ['', 'passive', 'active', 'combined', 'protection', 'config', 'api'];

export function mount(root, params, query) {
  const f = {
    service: query.get('service') || '',
    instance: query.get('instance') || '',
    to: query.get('to') || '',
    source: query.get('source') || '',
    since: query.get('since') || '',
  };
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter events', onsubmit: (e) => e.preventDefault() });
  const summary = h('p', { class: 'summary', 'aria-live': 'polite' });
  const tableHost = h('div', null, note('Loading…'));
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Load older events');
  const warn = h('p', { class: 'muted' });
  root.replaceChildren(h('h1', { tabindex: '-1' }, 'Events'),
    h('p', { class: 'muted' }, 'Every state change with its reason, from the monitor’s history; new events appear at the top as they happen.'),
    form, summary, tableHost, h('p', null, more), warn);

  const svcSel = h('select', { id: 'e-service' });
  const inst = h('input', { type: 'search', id: 'e-instance', value: f.instance, autocomplete: 'off', placeholder: 'exact name' });
  const toSel = h('select', { id: 'e-to' }, TO.map(([v, l]) => h('option', { value: v, selected: v === f.to }, l)));
  const srcSel = h('select', { id: 'e-source' }, SOURCES.map((v) => h('option', { value: v, selected: v === f.source }, v || 'any source')));
  const sinceSel = h('select', { id: 'e-since' }, SINCE.map(([v, l]) => h('option', { value: v, selected: v === f.since }, l)));
  form.append(
    h('div', { class: 'field' }, h('label', { for: 'e-service' }, 'Service'), svcSel),
    h('div', { class: 'field' }, h('label', { for: 'e-instance' }, 'Instance'), inst),
    h('div', { class: 'field' }, h('label', { for: 'e-to' }, 'Change'), toSel),
    h('div', { class: 'field' }, h('label', { for: 'e-source' }, 'Source'), srcSel),
    h('div', { class: 'field' }, h('label', { for: 'e-since' }, 'Period'), sinceSel));

  const fillServices = (st) => {
    const names = st.list.map((x) => x.name);
    if (f.service && !names.includes(f.service)) names.push(f.service);
    svcSel.replaceChildren(h('option', { value: '' }, 'all services'), ...names.map((n) => h('option', { value: n, selected: n === f.service }, n)));
  };

  let alive = true;
  let events = []; // shown, newest first
  let cursor = null; // oldest loaded event
  let exhausted = false;
  let gen = 0; // bumps on every filter change; stale answers are dropped

  const matches = (ev) => (!f.service || ev.service === f.service) && (!f.instance || ev.instance === f.instance)
    && (!f.to || ev.to === f.to) && (!f.source || ev.source === f.source);

  const render = () => {
    const shown = events.filter(matches);
    summary.textContent = shown.length ? `${shown.length} event${shown.length === 1 ? '' : 's'}, newest first.` : '';
    tableHost.replaceChildren(wrapTable(eventsTable(shown, { caption: 'Events, newest first', empty: 'No events match.' }), 'Events'));
    more.hidden = exhausted;
  };

  // page loads the next older page. The store pages by time: until is the
  // oldest shown event's time rounded up to the next millisecond, and
  // events already shown are dropped, so events that share a timestamp
  // are neither skipped nor repeated.
  const page = async (g) => {
    const q = new URLSearchParams({ order: 'desc', limit: String(PAGE) });
    if (f.service) q.set('service', f.service);
    if (f.instance) q.set('instance', f.instance);
    if (f.since) q.set('since', f.since);
    if (cursor) q.set('until', new Date(parseTime(cursor.time) + 1).toISOString());
    const r = await get(`api/v1/events?${q}`);
    if (g !== gen || !alive) return 0;
    const seen = new Set(events.map((e) => e.seq));
    const fresh = r.events.filter((e) => !seen.has(e.seq));
    if (r.events.length === PAGE && fresh.length === 0) {
      // A whole page inside one millisecond: step past it.
      warn.textContent = `More than ${PAGE} events share the instant ${cursor.time}; some of them are not listed. Narrow the filters to see them.`;
      cursor = { ...cursor, time: new Date(parseTime(cursor.time) - 1).toISOString() };
      return 0;
    }
    events = [...events, ...fresh].sort((a, b) => b.seq - a.seq);
    if (events.length) cursor = events[events.length - 1];
    if (r.events.length < PAGE) exhausted = true;
    return fresh.filter(matches).length;
  };

  // load fetches pages until enough rows pass the browser-side filters
  // (change and source are not server filters) or history ends.
  const load = async (reset) => {
    const g = reset ? ++gen : gen;
    if (reset) { events = []; cursor = null; exhausted = false; warn.textContent = ''; tableHost.replaceChildren(note('Loading…')); }
    more.disabled = true;
    try {
      let got = 0;
      for (let i = 0; i < 10 && !exhausted && got < 50; i++) {
        got += await page(g);
        if (g !== gen) return;
        if (!f.to && !f.source) break;
      }
      render();
    } catch (e) {
      if (g === gen && alive) tableHost.replaceChildren(errorNote(e));
    }
    more.disabled = false;
  };

  const changed = () => {
    f.service = svcSel.value; f.instance = inst.value.trim(); f.to = toSel.value; f.source = srcSel.value; f.since = sinceSel.value;
    history.replaceState(null, '', hashURL(['events'], f));
    load(true);
  };
  const changedSoon = debounce(changed, 300);
  for (const sel of [svcSel, toSel, srcSel, sinceSel]) sel.addEventListener('change', changed);
  inst.addEventListener('input', changedSoon);
  more.addEventListener('click', () => load(false));

  const off = subscribe((type, ev) => {
    if (type === 'reset') { load(true); return; }
    if (type !== 'transition' && type !== 'protection' && type !== 'config') return;
    if (events.some((e) => e.seq === ev.seq)) return;
    events.unshift(ev);
    if (matches(ev)) render();
  });
  const offSvc = services.on(fillServices);
  fillServices(services);
  load(true);
  return () => { alive = false; gen++; off(); offSvc(); changedSoon.cancel(); };
}
