// Service: the instances table (state, reason, since, last beat, RTT,
// suspicion, sources, zone), filtered by state, zone and search on the
// server, sorted in the browser, refreshed on every transition of the
// service and every 2 s (last beat, RTT and suspicion move between
// transitions).

import { h, badge, symbol, severity, zoneName, timeEl, parseTime, fmtDur, hashURL, wrapTable, throttle, debounce, keepFocus, STATE_ORDER } from '../util.js';
import { get } from '../api.js';
import { services, subscribe } from '../live.js';
import { errorNote, note } from './common.js';

const PAGE = 500;
const THRESHOLD = 8;

const COLUMNS = [
  { key: 'instance', label: 'Instance', cmp: (a, b) => a.instance.localeCompare(b.instance) },
  { key: 'state', label: 'State', cmp: (a, b) => severity(a.state) - severity(b.state) },
  { key: 'reason', label: 'Reason', cmp: (a, b) => (a.reason || '').localeCompare(b.reason || '') },
  { key: 'since', label: 'Since', cmp: (a, b) => t(a.since) - t(b.since) },
  { key: 'last_beat', label: 'Last beat', cmp: (a, b) => t(a.last_beat) - t(b.last_beat) },
  { key: 'rtt', label: 'RTT', cmp: (a, b) => a.rtt_ns - b.rtt_ns, num: true },
  { key: 'suspicion', label: 'Suspicion', cmp: (a, b) => a.suspicion - b.suspicion, num: true },
  { key: 'sources', label: 'Sources', cmp: (a, b) => (a.sources || []).join().localeCompare((b.sources || []).join()) },
  { key: 'zone', label: 'Zone', cmp: (a, b) => a.zone.localeCompare(b.zone) },
];

function t(v) { return parseTime(v) ?? 0; }

export function mount(root, params, query) {
  const name = params.service;
  const f = {
    states: (query.get('state') || '').split(',').filter(Boolean),
    zone: query.get('zone') || '',
    q: query.get('q') || '',
    sort: query.get('sort') || 'state',
    dir: query.get('dir') === 'desc' ? 'desc' : 'asc',
    offset: Math.max(0, parseInt(query.get('offset') || '0', 10) || 0),
  };

  const facts = h('p', { class: 'facts' });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter instances', onsubmit: (e) => e.preventDefault() });
  const summary = h('p', { class: 'summary', 'aria-live': 'polite' });
  const tableHost = h('div', null, note('Loading…'));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  root.replaceChildren(
    h('nav', { 'aria-label': 'Breadcrumb', class: 'crumbs' }, h('ol', null,
      h('li', null, h('a', { href: '#/' }, 'Fleet')), h('li', { 'aria-current': 'page' }, name))),
    h('h1', { tabindex: '-1' }, name), facts, form, summary, tableHost, pager);

  let alive = true;
  let rows = [];
  let total = 0;
  let svc = null;

  const sync = () => {
    gen++;
    // Keep the filters in the address (no new history entry per key).
    const url = hashURL(['services', name], {
      state: f.states, zone: f.zone, q: f.q,
      sort: f.sort === 'state' ? '' : f.sort, dir: f.dir === 'asc' ? '' : f.dir, offset: f.offset || '',
    });
    history.replaceState(null, '', url);
  };

  // --- filter form ---
  const stateBoxes = {};
  const stateFs = h('fieldset', { class: 'states' }, h('legend', null, 'State'));
  for (const st of STATE_ORDER) {
    const cb = h('input', { type: 'checkbox', name: 'state', value: st, id: `f-${st}`, checked: f.states.includes(st) });
    cb.addEventListener('change', () => {
      f.states = STATE_ORDER.filter((x) => stateBoxes[x].checked);
      f.offset = 0;
      sync();
      load();
    });
    stateBoxes[st] = cb;
    stateFs.append(h('label', { for: `f-${st}`, class: `check s-${st}` }, cb, ' ',
      h('span', { class: 'sym', 'aria-hidden': 'true' }, symbol(st)), ` ${st}`, h('span', { class: 'check-n', dataset: { state: st } })));
  }
  const zoneSel = h('select', { id: 'f-zone' });
  zoneSel.addEventListener('change', () => { f.zone = zoneSel.value; f.offset = 0; sync(); load(); });
  const search = h('input', { type: 'search', id: 'f-q', value: f.q, placeholder: 'name, zone, reason, label', autocomplete: 'off' });
  const searchNow = debounce(() => { f.q = search.value.trim(); f.offset = 0; sync(); load(); }, 250);
  search.addEventListener('input', searchNow);
  const clear = h('button', { type: 'button', class: 'secondary' }, 'Clear filters');
  clear.addEventListener('click', () => {
    f.states = []; f.zone = ''; f.q = ''; f.offset = 0;
    for (const cb of Object.values(stateBoxes)) cb.checked = false;
    zoneSel.value = ''; search.value = '';
    sync(); load();
  });
  form.append(stateFs,
    h('div', { class: 'field' }, h('label', { for: 'f-zone' }, 'Zone'), zoneSel),
    h('div', { class: 'field grow' }, h('label', { for: 'f-q' }, 'Search'), search),
    h('div', { class: 'field' }, clear));

  const renderService = (st) => {
    if (!alive) return;
    svc = st.list.find((x) => x.name === name) || null;
    if (!svc) {
      facts.replaceChildren(st.loaded ? h('span', { class: 'error' }, `No service named “${name}”.`) : '');
      return;
    }
    const bits = [`${svc.instances} instance${svc.instances === 1 ? '' : 's'}`];
    if (svc.passive) bits.push(`beats every ${fmtDur(svc.interval_ns)}`);
    if (svc.probes && svc.probes.length) bits.push(`probes: ${svc.probes.join(', ')}`);
    bits.push(`at most ${svc.max_down} down at once (${svc.down} now)`);
    facts.textContent = bits.join(' · ');
    for (const stName of STATE_ORDER) {
      const n = svc.counts[stName] || 0;
      const span = stateFs.querySelector(`.check-n[data-state="${stName}"]`);
      if (span) span.textContent = ` (${n})`;
    }
    const zones = svc.zones.map((z) => z.name);
    const cur = f.zone;
    zoneSel.replaceChildren(h('option', { value: '' }, 'all zones'),
      ...zones.map((z) => h('option', { value: z, selected: z === cur }, zoneName(z))));
    if (cur && !zones.includes(cur)) zoneSel.append(h('option', { value: cur, selected: true }, zoneName(cur)));
  };

  let gen = 0; // bumped by every filter change: answers to older filters are dropped
  const load = throttle(async () => {
    const g = gen;
    const q = new URLSearchParams();
    if (f.states.length) q.set('state', f.states.join(','));
    if (f.zone) q.set('zone', f.zone);
    if (f.q) q.set('q', f.q);
    q.set('limit', String(PAGE));
    if (f.offset) q.set('offset', String(f.offset));
    try {
      const r = await get(`api/v1/services/${encodeURIComponent(name)}/instances?${q}`);
      if (!alive || g !== gen) return;
      rows = r.instances;
      total = r.total;
      render();
    } catch (e) {
      if (alive) tableHost.replaceChildren(errorNote(e));
    }
  }, 300);

  const render = () => {
    const col = COLUMNS.find((c) => c.key === f.sort) || COLUMNS[1];
    const sign = f.dir === 'desc' ? -1 : 1;
    const sorted = [...rows].sort((a, b) => sign * col.cmp(a, b) || a.instance.localeCompare(b.instance));
    const from = total ? f.offset + 1 : 0;
    const to = f.offset + rows.length;
    const filtered = f.states.length || f.zone || f.q;
    summary.textContent = total
      ? `Showing ${from}–${to} of ${total} instance${total === 1 ? '' : 's'}${filtered ? ' matching the filters' : ''}.`
      : (filtered ? 'No instance matches the filters.' : 'No instances yet.');
    keepFocus(tableHost, () => tableHost.replaceChildren(table(sorted, col.key)));
    pager.replaceChildren();
    if (total > PAGE) {
      const prev = h('button', { type: 'button', class: 'secondary', disabled: f.offset === 0 }, '← Previous');
      const next = h('button', { type: 'button', class: 'secondary', disabled: to >= total }, 'Next →');
      prev.addEventListener('click', () => { f.offset = Math.max(0, f.offset - PAGE); sync(); load(); });
      next.addEventListener('click', () => { f.offset += PAGE; sync(); load(); });
      pager.append(prev, ' ', next, h('span', { class: 'muted' }, ' Sorting applies to the page shown.'));
    }
  };

  const table = (list, sortKey) => {
    const head = h('tr', null, COLUMNS.map((c) => {
      const active = c.key === sortKey;
      const btn = h('button', { type: 'button', class: 'sort', dataset: { key: `sort-${c.key}` } }, c.label,
        h('span', { class: 'sort-ind', 'aria-hidden': 'true' }, active ? (f.dir === 'asc' ? ' ▲' : ' ▼') : ''));
      btn.addEventListener('click', () => {
        if (f.sort === c.key) f.dir = f.dir === 'asc' ? 'desc' : 'asc';
        else { f.sort = c.key; f.dir = 'asc'; }
        sync();
        render();
      });
      return h('th', { scope: 'col', class: c.num ? 'num' : null, 'aria-sort': active ? (f.dir === 'asc' ? 'ascending' : 'descending') : null }, btn);
    }));
    const tbody = h('tbody');
    for (const r of list) tbody.append(instanceRow(name, r));
    if (!list.length) tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: COLUMNS.length }, 'No instances.')));
    return wrapTable(h('table', { class: 'instances stack' },
      h('caption', { class: 'visually-hidden' }, `Instances of ${name}; column headers sort`), h('thead', null, head), tbody), `Instances of ${name}`);
  };

  const off = subscribe((type, ev) => {
    if (type === 'reset' || ((type === 'transition' || type === 'protection') && ev.service === name)) load();
  });
  const offSvc = services.on(renderService);
  renderService(services);
  load();
  const poll = setInterval(() => load(), 2000);

  return () => { alive = false; off(); offSvc(); clearInterval(poll); load.cancel(); searchNow.cancel(); };
}

function instanceRow(service, r) {
  const passive = (r.sources || []).includes('passive');
  const sus = passive ? r.suspicion : null;
  return h('tr', { class: `row-${r.state}`, dataset: { instance: r.instance, state: r.state } },
    h('th', { scope: 'row', 'data-label': 'Instance' },
      h('a', { href: hashURL(['services', service, 'instances', r.instance]), dataset: { key: `i-${r.instance}` } }, r.instance)),
    h('td', { 'data-label': 'State', class: 'state' }, badge(r.state)),
    h('td', { 'data-label': 'Reason', class: 'reason' }, r.reason || h('span', { class: 'muted' }, '—')),
    h('td', { 'data-label': 'Since' }, timeEl(parseTime(r.since))),
    h('td', { 'data-label': 'Last beat' }, passive ? timeEl(parseTime(r.last_beat), { clock: false }) : h('span', { class: 'muted' }, 'no beats')),
    h('td', { 'data-label': 'RTT', class: 'num' }, r.rtt_ns ? fmtDur(r.rtt_ns) : '—'),
    h('td', { 'data-label': 'Suspicion', class: 'num' }, sus === null ? '—' : suspicion(sus)),
    h('td', { 'data-label': 'Sources' }, (r.sources || []).join(', ') || '—'),
    h('td', { 'data-label': 'Zone' }, zoneName(r.zone)));
}

function suspicion(v) {
  const bar = h('span', { class: 'susbar', 'aria-hidden': 'true' });
  const fill = h('span', { class: v >= THRESHOLD ? 'over' : '' });
  fill.style.width = `${Math.min(100, (v / THRESHOLD) * 100)}%`;
  bar.append(fill);
  return h('span', { class: 'sus', title: `suspicion ${v.toFixed(2)}; the detector suspects at ${THRESHOLD}` }, `${v.toFixed(1)} `, bar);
}
