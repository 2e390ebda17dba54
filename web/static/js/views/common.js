// Pieces several views share: the event table and trace links.

import { h, badge, timeEl, parseTime, zoneName, hashURL } from '../util.js';
import { traceURL } from '../api.js';

// traceCell links a trace id to the configured trace UI, or shows it.
export function traceCell(id) {
  if (!id) return h('span', { class: 'muted' }, '—');
  const url = traceURL(id);
  const text = id.length > 12 ? `${id.slice(0, 8)}…` : id;
  if (!url) return h('code', { class: 'trace', title: id }, id);
  return h('a', { class: 'trace', href: url, target: '_blank', rel: 'noopener noreferrer', title: `Open trace ${id}` },
    h('code', null, text), h('span', { class: 'visually-hidden' }, ` (trace ${id}, opens in a new tab)`));
}

// change renders an event's from → to.
export function change(ev) {
  if (!ev.instance && (ev.to || '').startsWith('protection_')) {
    const on = ev.to === 'protection_on';
    return h('span', { class: `badge ${on ? 's-protected' : 's-alive'}`, dataset: { state: ev.to } },
      h('span', { class: 'sym', 'aria-hidden': 'true' }, on ? '◆' : '◇'), on ? ' protection on' : ' protection off');
  }
  if (!ev.instance) return h('span', null, ev.to || ev.source || 'notice');
  return h('span', { class: 'change' }, ev.from ? badge(ev.from) : '', h('span', { class: 'arrow', 'aria-label': 'to' }, ' → '), badge(ev.to));
}

// eventsTable renders events (newest first) as a table; cols picks the
// optional columns.
export function eventsTable(events, { caption, service = true, instance = true, empty = 'No events.' } = {}) {
  const head = ['Time'];
  if (service) head.push('Service');
  if (instance) head.push('Instance', 'Zone');
  head.push('Change', 'Reason', 'Source', 'Trace');
  const tbody = h('tbody');
  for (const ev of events) tbody.append(eventRow(ev, { service, instance }));
  const table = h('table', { class: 'events stack' },
    caption ? h('caption', { class: 'visually-hidden' }, caption) : null,
    h('thead', null, h('tr', null, head.map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
  if (!events.length) {
    tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: head.length }, empty)));
  }
  return table;
}

export function eventRow(ev, { service = true, instance = true } = {}) {
  const t = parseTime(ev.time);
  const cells = [h('td', { 'data-label': 'Time', class: 'when' }, timeEl(t, { clockFirst: true }))];
  if (service) {
    cells.push(h('td', { 'data-label': 'Service' }, ev.service ? h('a', { href: hashURL(['services', ev.service]) }, ev.service) : '—'));
  }
  if (instance) {
    cells.push(h('td', { 'data-label': 'Instance' }, ev.instance
      ? h('a', { href: hashURL(['services', ev.service, 'instances', ev.instance]) }, ev.instance)
      : h('span', { class: 'muted' }, ev.source === 'protection' ? (ev.zone === '' ? 'whole service' : 'whole zone') : '—')));
    cells.push(h('td', { 'data-label': 'Zone' }, ev.instance || ev.zone ? zoneName(ev.zone || '') : '—'));
  }
  cells.push(h('td', { 'data-label': 'Change' }, change(ev)));
  cells.push(h('td', { 'data-label': 'Reason', class: 'reason' }, ev.reason || h('span', { class: 'muted' }, '—')));
  cells.push(h('td', { 'data-label': 'Source' }, ev.source || '—'));
  cells.push(h('td', { 'data-label': 'Trace' }, traceCell(ev.trace_id)));
  return h('tr', { dataset: { seq: ev.seq, to: ev.to || '' } }, cells);
}

// loading and error placeholders.
export function note(text, cls = 'muted') {
  return h('p', { class: cls }, text);
}

export function errorNote(err) {
  return h('p', { class: 'error', role: 'alert' }, `Could not load: ${err.message || err}`);
}
