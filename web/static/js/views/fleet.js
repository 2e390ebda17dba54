// Fleet: every service × zone with its counts per state, the instances
// that need attention (what is down, since when, why) and the latest
// events, all kept current from the watch stream.

import { h, badge, symbol, severity, zoneName, timeEl, parseTime, hashURL, wrapTable, throttle, keepFocus } from '../util.js';
import { get } from '../api.js';
import { services, subscribe } from '../live.js';
import { eventsTable, errorNote, note } from './common.js';

const GRID_STATES = ['alive', 'suspect', 'protected', 'degraded', 'down', 'unknown'];
const ATTENTION = 'down,suspect,protected,degraded,unknown';

export function mount(root) {
  const tiles = h('ul', { class: 'tiles', 'aria-label': 'Instances per state, all services' });
  const gridHost = h('div');
  const attentionHost = h('div', null, note('Loading…'));
  const eventsHost = h('div', null, note('Loading…'));
  root.replaceChildren(
    h('h1', { tabindex: '-1' }, 'Fleet'),
    tiles,
    h('section', { 'aria-labelledby': 'h-grid' }, h('h2', { id: 'h-grid' }, 'Services and zones'), gridHost),
    h('section', { 'aria-labelledby': 'h-att' }, h('h2', { id: 'h-att' }, 'Needs attention'), attentionHost),
    h('section', { 'aria-labelledby': 'h-ev' },
      h('h2', { id: 'h-ev' }, 'Latest events ', h('a', { class: 'more', href: '#/events' }, 'all events')), eventsHost),
  );

  let alive = true;
  const render = (st) => {
    if (!alive) return;
    if (st.error && !st.loaded) { gridHost.replaceChildren(errorNote(st.error)); return; }
    if (!st.loaded) { gridHost.replaceChildren(note('Loading…')); return; }
    renderTiles(tiles, st.list);
    keepFocus(gridHost, () => gridHost.replaceChildren(grid(st.list)));
    refreshAttention();
  };

  const refreshAttention = throttle(async () => {
    const list = services.list.filter((sv) => GRID_STATES.some((x) => x !== 'alive' && sv.counts[x] > 0));
    try {
      const results = await Promise.all(list.map((sv) =>
        get(`api/v1/services/${encodeURIComponent(sv.name)}/instances?state=${ATTENTION}&limit=200`)));
      if (!alive) return;
      const rows = results.flatMap((r) => r.instances);
      const more = results.reduce((n, r) => n + Math.max(0, r.total - r.instances.length), 0);
      keepFocus(attentionHost, () => attentionHost.replaceChildren(attention(rows, more)));
    } catch (e) {
      if (alive) attentionHost.replaceChildren(errorNote(e));
    }
  }, 500);

  let recent = [];
  const renderEvents = () => {
    keepFocus(eventsHost, () => eventsHost.replaceChildren(wrapTable(eventsTable(recent, { caption: 'Latest events', empty: 'No events yet.' }), 'Latest events')));
  };
  get('api/v1/events?order=desc&limit=10').then((r) => {
    if (!alive) return;
    const seen = new Set(recent.map((e) => e.seq));
    recent = [...recent, ...r.events.filter((e) => !seen.has(e.seq))].sort((a, b) => b.seq - a.seq).slice(0, 10);
    renderEvents();
  }).catch((e) => alive && eventsHost.replaceChildren(errorNote(e)));

  const off = subscribe((type, ev) => {
    if (type === 'reset') { refreshAttention(); return; }
    if (type !== 'transition' && type !== 'protection') return;
    recent = [ev, ...recent.filter((e) => e.seq !== ev.seq)].slice(0, 10);
    renderEvents();
    refreshAttention();
  });
  const offSvc = services.on(render);
  render(services);

  return () => { alive = false; off(); offSvc(); refreshAttention.cancel(); };
}

function renderTiles(ul, list) {
  const total = {};
  let all = 0;
  for (const sv of list) {
    all += sv.instances;
    for (const st of GRID_STATES) total[st] = (total[st] || 0) + (sv.counts[st] || 0);
  }
  ul.replaceChildren(
    h('li', { class: 'tile' }, h('span', { class: 'tile-n', dataset: { total: all } }, all), h('span', { class: 'tile-l' }, 'instances')),
    ...GRID_STATES.map((st) => h('li', { class: `tile s-${st}${total[st] ? '' : ' zero'}` },
      h('span', { class: 'tile-n', dataset: { state: st, count: total[st] } }, total[st]),
      h('span', { class: 'tile-l' }, h('span', { class: 'sym', 'aria-hidden': 'true' }, symbol(st)), ' ', st))),
  );
}

// grid is one table: a row group per service (its totals, then a row per
// zone when it has named zones).
function grid(list) {
  if (!list.length) return note('No services are configured. Add some to pulse.yaml (see examples/pulse.yaml).');
  const table = h('table', { class: 'grid stack' },
    h('caption', { class: 'visually-hidden' }, 'Instances per state by service and zone'),
    h('thead', null, h('tr', null,
      h('th', { scope: 'col' }, 'Service / zone'),
      h('th', { scope: 'col', class: 'num' }, 'Instances'),
      GRID_STATES.map((st) => h('th', { scope: 'col', class: `num th-${st}` },
        h('span', { class: 'sym', 'aria-hidden': 'true' }, symbol(st)), ' ', st)),
      h('th', { scope: 'col', class: 'dist-col' }, 'Distribution'))));
  for (const sv of list) {
    const tb = h('tbody', { dataset: { service: sv.name } });
    tb.append(row(sv, sv, null));
    const named = sv.zones.length > 1 || (sv.zones.length === 1 && sv.zones[0].name !== '');
    if (named) for (const z of sv.zones) tb.append(row(sv, z, z.name));
    table.append(tb);
  }
  return wrapTable(table, 'Services and zones');
}

function row(sv, g, zone) {
  const isZone = zone !== null;
  const href = isZone ? hashURL(['services', sv.name], { zone }) : hashURL(['services', sv.name]);
  const name = isZone ? `zone ${zoneName(zone)}` : sv.name;
  const th = h('th', { scope: 'row', class: isZone ? 'zone-name' : 'svc-name' }, h('a', { href }, name));
  if (g.protected) th.append(' ', h('span', { class: 'badge s-protected small' }, h('span', { class: 'sym', 'aria-hidden': 'true' }, '◆'), ' protection on'));
  const cells = [th, h('td', { class: 'num', 'data-label': 'Instances' }, g.instances)];
  for (const st of GRID_STATES) {
    const n = g.counts[st] || 0;
    const stateHref = isZone ? hashURL(['services', sv.name], { zone, state: st }) : hashURL(['services', sv.name], { state: st });
    const attrs = { class: `num cnt${n ? '' : ' zero'}`, 'data-label': st, dataset: { service: sv.name, state: st, count: n } };
    if (isZone) attrs.dataset.zone = zone;
    cells.push(h('td', attrs, n
      ? h('a', { class: `count s-${st}`, href: stateHref, 'aria-label': `${n} ${st} in ${name}` },
        h('span', { class: 'sym', 'aria-hidden': 'true' }, symbol(st)), ` ${n}`, h('span', { class: 'mobile-label' }, ` ${st}`))
      : h('span', { class: 'count-zero' }, '0')));
  }
  cells.push(h('td', { class: 'dist-col', 'aria-hidden': 'true' }, distribution(g)));
  return h('tr', { class: isZone ? 'zone-row' : 'svc-row' }, cells);
}

function distribution(g) {
  const bar = h('div', { class: 'dist' });
  if (!g.instances) return bar;
  for (const st of ['down', 'suspect', 'protected', 'degraded', 'unknown', 'alive']) {
    const n = g.counts[st] || 0;
    if (!n) continue;
    const seg = h('span', { class: `seg s-fill-${st}`, title: `${n} ${st}` });
    seg.style.width = `${(n / g.instances) * 100}%`;
    bar.append(seg);
  }
  return bar;
}

function attention(rows, more) {
  if (!rows.length) return h('p', { class: 'allgood' }, h('span', { class: 'sym', 'aria-hidden': 'true' }, '✓'), ' Every instance is alive.');
  rows.sort((a, b) => severity(a.state) - severity(b.state) || Date.parse(a.since) - Date.parse(b.since));
  const tbody = h('tbody');
  for (const r of rows) {
    tbody.append(h('tr', { dataset: { service: r.service, instance: r.instance, state: r.state } },
      h('td', { 'data-label': 'Service' }, h('a', { href: hashURL(['services', r.service]) }, r.service)),
      h('th', { scope: 'row', 'data-label': 'Instance' }, h('a', { href: hashURL(['services', r.service, 'instances', r.instance]) }, r.instance)),
      h('td', { 'data-label': 'Zone' }, zoneName(r.zone)),
      h('td', { 'data-label': 'State' }, badge(r.state)),
      h('td', { 'data-label': 'Since' }, timeEl(parseTime(r.since))),
      h('td', { 'data-label': 'Reason', class: 'reason' }, r.reason || h('span', { class: 'muted' }, '—'))));
  }
  const table = h('table', { class: 'attention stack' },
    h('caption', { class: 'visually-hidden' }, 'Instances that are not alive, most severe first'),
    h('thead', null, h('tr', null, ['Service', 'Instance', 'Zone', 'State', 'Since', 'Reason'].map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
  return h('div', null, wrapTable(table, 'Instances that need attention'),
    more ? note(`${more} more not shown: open the service to see them all.`) : null);
}

