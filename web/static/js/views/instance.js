// Instance: the evidence behind one verdict over time. The API serves the
// current values only, so this page polls the instance every second while
// it is open and keeps a rolling window of samples in the browser (the
// charts start when the page opens). Transitions come from the watch
// stream and trigger an immediate poll.

import { h, badge, zoneName, timeEl, parseTime, fmtDur, fmtMs, fmtClock, hashURL, wrapTable, keepFocus } from '../util.js';
import { get, serverClock, APIError } from '../api.js';
import { subscribe } from '../live.js';
import { lineChart, legend, stateStrip, phaseBar, PHASES } from '../charts.js';
import { eventsTable, traceCell, errorNote, note } from './common.js';

const WINDOW = 10 * 60 * 1000; // rolling window kept and drawn
const MIN_SPAN = 60 * 1000; // never draw less than a minute
const POLL = 1000;
const THRESHOLD = 8;
const PROBE_HISTORY = 20;

export function mount(root, params) {
  const { service, instance } = params;
  const base = `api/v1/services/${encodeURIComponent(service)}/instances/${encodeURIComponent(instance)}`;

  const title = h('h1', { tabindex: '-1' }, instance);
  const why = h('div', { class: 'why', 'aria-live': 'polite' });
  const facts = h('dl', { class: 'facts-grid' });
  const since = h('p', { class: 'muted collecting' });
  const strip = h('div', { class: 'chart-host' });
  const charts = h('div', { class: 'charts' });
  const dataHost = h('div');
  const probesHost = h('div', null, note('No probes have run against this instance yet.'));
  const phasesHost = h('div');
  const eventsHost = h('div', null, note('Loading…'));
  root.replaceChildren(
    h('nav', { 'aria-label': 'Breadcrumb', class: 'crumbs' }, h('ol', null,
      h('li', null, h('a', { href: '#/' }, 'Fleet')),
      h('li', null, h('a', { href: hashURL(['services', service]) }, service)),
      h('li', { 'aria-current': 'page' }, instance))),
    title, why, facts,
    h('section', { 'aria-labelledby': 'h-tl' }, h('h2', { id: 'h-tl' }, 'Timeline'), since, strip, charts,
      h('details', { class: 'data' }, h('summary', null, 'Chart data as a table'), dataHost)),
    h('section', { 'aria-labelledby': 'h-pr' }, h('h2', { id: 'h-pr' }, 'Probes'), probesHost, phasesHost),
    h('section', { 'aria-labelledby': 'h-iev' }, h('h2', { id: 'h-iev' }, 'Events'), eventsHost));

  let alive = true;
  const samples = [];
  const probeHist = []; // newest first
  const probeSeen = new Set();
  let started = null;
  let last = null;

  const poll = async () => {
    let v;
    try {
      v = await get(base);
    } catch (e) {
      if (!alive) return;
      if (e instanceof APIError && e.status === 404) {
        why.replaceChildren(h('p', { class: 'error' }, `${service}/${instance} is not known to the monitor (deregistered, or never registered).`));
      } else {
        why.replaceChildren(errorNote(e));
      }
      return;
    }
    if (!alive) return;
    const now = serverClock.now();
    if (started === null) started = now;
    const smp = {
      t: now,
      state: v.state,
      lastBeat: parseTime(v.last_beat),
      beats: v.beats,
      rtt: v.rtt_ns ? v.rtt_ns / 1e6 : null,
      interval: v.interval_ns ? v.interval_ns / 1e6 : null,
      deadline: parseTime(v.deadline),
      suspicion: (v.sources || []).includes('passive') ? v.suspicion : null,
    };
    const prev = samples[samples.length - 1];
    smp.interarrival = prev && prev.lastBeat !== null && smp.lastBeat !== null && smp.beats > prev.beats
      ? (smp.lastBeat - prev.lastBeat) / (smp.beats - prev.beats) : null;
    smp.timeout = smp.deadline !== null && smp.lastBeat !== null ? smp.deadline - smp.lastBeat : null;
    smp.silence = smp.lastBeat !== null ? Math.max(0, now - smp.lastBeat) : null;
    samples.push(smp);
    while (samples.length && samples[0].t < now - WINDOW) samples.shift();
    for (const p of v.probes || []) {
      const key = `${p.module}@${p.at}`;
      if (probeSeen.has(key)) continue;
      probeSeen.add(key);
      probeHist.unshift({ ...p, atMs: parseTime(p.at) });
    }
    probeHist.length = Math.min(probeHist.length, PROBE_HISTORY);
    // Results still current must stay "seen" even when they fall out of
    // the history (a rarely run probe), so the set is only rebuilt when large.
    if (probeSeen.size > 5000) {
      probeSeen.clear();
      for (const p of [...probeHist, ...(v.probes || [])]) probeSeen.add(`${p.module}@${p.at}`);
    }
    last = v;
    renderFacts(v, now);
    renderCharts();
    renderProbes(v);
  };

  const renderFacts = (v, now) => {
    title.replaceChildren(instance, ' ', badge(v.state));
    document.title = `${instance} (${v.state}) · ${service} · pulse`;
    why.replaceChildren(
      h('p', { class: 'why-line' }, badge(v.state), ' since ', timeEl(parseTime(v.since)), v.source ? ` · decided by ${v.source}` : ''),
      h('p', { class: 'why-reason' }, h('span', { class: 'label' }, 'Reason: '), v.reason || h('span', { class: 'muted' }, 'none given')));
    const dl = [];
    const add = (k, val) => dl.push(h('div', null, h('dt', null, k), h('dd', null, val)));
    add('Service', h('a', { href: hashURL(['services', service]) }, service));
    add('Zone', zoneName(v.zone));
    if (v.target) add('Target', h('code', null, v.target));
    add('Sources', (v.sources || []).join(', ') || 'none yet');
    if (v.transport) add('Transport', v.transport);
    add('Beats received', String(v.beats));
    add('Last beat', timeEl(parseTime(v.last_beat), { clock: false }));
    if (v.last_probe) add('Last probe', timeEl(parseTime(v.last_probe), { clock: false }));
    add('RTT estimate', v.rtt_ns ? fmtDur(v.rtt_ns) : '—');
    if (v.interval_ns) add('Learned interval', fmtDur(v.interval_ns));
    const dl8 = parseTime(v.deadline);
    if (dl8 !== null) add('Detector deadline', dl8 > now ? `in ${fmtMs(dl8 - now)}` : `passed ${fmtMs(now - dl8)} ago`);
    if ((v.sources || []).includes('passive')) add('Suspicion', `${v.suspicion.toFixed(2)} (suspect at ${THRESHOLD})`);
    add('Reported by itself', v.reported || 'unknown');
    if (v.flap_penalty) add('Flap penalty', v.flap_penalty.toFixed(0));
    add('Trace', traceCell(v.trace_id));
    if (v.labels) add('Labels', Object.entries(v.labels).map(([k, val]) => `${k}=${val}`).join(', '));
    keepFocus(facts, () => facts.replaceChildren(...dl));
  };

  const renderCharts = () => {
    if (!samples.length) return;
    const t1 = samples[samples.length - 1].t;
    const t0 = t1 - Math.min(WINDOW, Math.max(MIN_SPAN, t1 - samples[0].t));
    const width = charts.clientWidth || 900;
    since.textContent = `Collected by this page every second since ${fmtClock(started)} (the API serves current values only); the last ${Math.round(WINDOW / 60000)} minutes are kept.`;

    const spans = [];
    for (const smp of samples) {
      const cur = spans[spans.length - 1];
      if (cur && cur.state === smp.state) cur.t1 = smp.t;
      else {
        if (cur) cur.t1 = smp.t;
        spans.push({ state: smp.state, t0: smp.t, t1: smp.t });
      }
    }
    strip.replaceChildren(stateStrip({ width, t0, t1, spans, label: `State over time: ${spans.map((sp) => `${sp.state} from ${fmtClock(sp.t0)}`).join(', ')}` }));

    const pts = (k) => samples.map((x) => [x.t, x[k]]);
    const lastOf = (k) => { for (let i = samples.length - 1; i >= 0; i--) if (samples[i][k] !== null) return samples[i][k]; return null; };
    const ms = (v) => (v === null ? '—' : fmtMs(v));
    const fig = (id, caption, svg, items) => h('figure', { class: 'chart-fig', id }, h('figcaption', null, caption), svg, legend(items));

    const out = [];
    const passive = samples.some((x) => x.lastBeat !== null);
    if (passive) {
      const series = [
        { name: 'inter-arrival (mean per second)', key: 'interarrival', cls: 'c1', markers: 'circle' },
        { name: 'detector timeout after the last beat', key: 'timeout', cls: 'c2 dashed', step: true },
        { name: 'learned interval', key: 'interval', cls: 'c3 thin' },
        { name: 'silence (now − last beat)', key: 'silence', cls: 'c4 dotted', scale: false },
      ].map((se) => ({ ...se, points: pts(se.key), value: ms(lastOf(se.key)) }));
      out.push(fig('chart-beats', 'Beat timing: arrivals against the detector’s timeout (a silence that crosses the timeout turns the instance suspect)',
        lineChart({ width, t0, t1, series, yFormat: (v) => fmtMs(v), label: 'Beat timing in milliseconds over time' }), series));
    }
    const rttSeries = [];
    if (samples.some((x) => x.rtt !== null)) rttSeries.push({ name: 'RTT estimate', cls: 'c1', points: pts('rtt') });
    const modules = [...new Set(probeHist.map((p) => p.module))];
    modules.forEach((mod, i) => {
      const pp = probeHist.filter((p) => p.module === mod && p.atMs !== null).sort((a, b) => a.atMs - b.atMs)
        .map((p) => [p.atMs, p.latency_ns / 1e6]);
      rttSeries.push({ name: `probe ${mod} latency`, cls: `c${5 + (i % 3)} dashed`, markers: ['square', 'triangle', 'circle'][i % 3], points: pp });
    });
    if (rttSeries.length) {
      out.push(fig('chart-rtt', 'Round-trip time', lineChart({ width, t0, t1, series: rttSeries, yFormat: (v) => fmtMs(v), label: 'Round-trip time in milliseconds over time' }),
        rttSeries.map((se) => ({ ...se, value: ms(se.points.length ? se.points[se.points.length - 1][1] : null) }))));
    }
    if (passive) {
      const sus = [{ name: 'suspicion', cls: 'c2', points: pts('suspicion') }];
      out.push(fig('chart-sus', `Suspicion (the detector suspects at ${THRESHOLD})`,
        lineChart({ width, height: 150, t0, t1, series: sus, yFloor: THRESHOLD, yFormat: (v) => String(+v.toFixed(1)), thresholds: [{ v: THRESHOLD, label: `threshold ${THRESHOLD}`, cls: 'c4' }], label: 'Suspicion level over time' }),
        [{ ...sus[0], value: lastOf('suspicion') === null ? '—' : lastOf('suspicion').toFixed(2) }]));
    }
    if (!out.length) out.push(note('No timing evidence yet: no beats and no probes.'));
    charts.replaceChildren(...out);

    // The same numbers as a table (last 30 samples, newest first).
    if (dataHost.closest('details').open) {
      const rows = samples.slice(-30).reverse();
      const tbl = wrapTable(h('table', { class: 'data-table' },
        h('caption', { class: 'visually-hidden' }, 'Latest samples'),
        h('thead', null, h('tr', null, ['Time', 'State', 'Inter-arrival', 'Timeout', 'Silence', 'RTT', 'Suspicion'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', null, rows.map((x) => h('tr', null,
          h('td', null, fmtClock(x.t)), h('td', null, x.state), h('td', { class: 'num' }, ms(x.interarrival)),
          h('td', { class: 'num' }, ms(x.timeout)), h('td', { class: 'num' }, ms(x.silence)), h('td', { class: 'num' }, ms(x.rtt)),
          h('td', { class: 'num' }, x.suspicion === null ? '—' : x.suspicion.toFixed(2)))))), 'Chart data');
      keepFocus(dataHost, () => dataHost.replaceChildren(tbl));
    }
  };

  const renderProbes = (v) => {
    const probes = v.probes || [];
    if (!probes.length) return;
    keepFocus(probesHost, () => probesHost.replaceChildren(wrapTable(h('table', { class: 'probes stack' },
      h('caption', null, 'Latest result of each probe'),
      h('thead', null, h('tr', null, ['Probe', 'Status', 'Latency', 'Failures in a row', 'At', 'Peer', 'Reason', 'Trace'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, probes.map((p) => h('tr', { dataset: { module: p.module } },
        h('th', { scope: 'row', 'data-label': 'Probe' }, p.module),
        h('td', { 'data-label': 'Status' }, h('span', { class: `badge st-${p.status}` }, p.status), p.error_class ? ` (${p.error_class})` : '', p.http_status ? ` HTTP ${p.http_status}` : ''),
        h('td', { 'data-label': 'Latency', class: 'num' }, fmtDur(p.latency_ns)),
        h('td', { 'data-label': 'Failures in a row', class: 'num' }, String(p.consecutive_failures)),
        h('td', { 'data-label': 'At' }, timeEl(parseTime(p.at), { clock: false })),
        h('td', { 'data-label': 'Peer' }, p.peer ? h('code', null, p.peer) : '—'),
        h('td', { 'data-label': 'Reason', class: 'reason' }, p.reason || h('span', { class: 'muted' }, '—')),
        h('td', { 'data-label': 'Trace' }, traceCell(p.trace_id)))))), 'Latest probe results')));

    const max = Math.max(1, ...probeHist.map((p) => phaseTotal(p.phases)));
    keepFocus(phasesHost, () => phasesHost.replaceChildren(
      h('h3', null, 'Phase breakdown of the last probes'),
      h('ul', { class: 'legend' }, PHASES.map(([name, key]) => h('li', null, h('span', { class: `phase-sw ph-${key.replace('_ns', '')}`, 'aria-hidden': 'true' }), ` ${name}`))),
      wrapTable(h('table', { class: 'phases stack' },
        h('caption', { class: 'visually-hidden' }, 'Time spent in each phase of the last probes, newest first'),
        h('thead', null, h('tr', null, ['At', 'Probe', 'Status', ...PHASES.map(([n]) => n), 'Total', 'Breakdown'].map((c) => h('th', { scope: 'col', class: c === 'Breakdown' ? 'bar-col' : null }, c)))),
        h('tbody', null, probeHist.map((p) => h('tr', null,
          h('td', { 'data-label': 'At' }, fmtClock(p.atMs)),
          h('td', { 'data-label': 'Probe' }, p.module),
          h('td', { 'data-label': 'Status' }, p.status),
          PHASES.map(([n, key]) => h('td', { 'data-label': n, class: 'num' }, p.phases && p.phases[key] ? fmtDur(p.phases[key]) : '—')),
          h('td', { 'data-label': 'Total', class: 'num' }, fmtDur(p.latency_ns)),
          h('td', { class: 'bar-col' }, phaseBar(p.phases || {}, max)))))), 'Probe phases')));
  };

  let events = [];
  const renderEvents = () => keepFocus(eventsHost, () => eventsHost.replaceChildren(wrapTable(eventsTable(events, { service: false, instance: false, caption: `Events of ${instance}`, empty: 'No transitions recorded.' }), 'Events')));
  get(`api/v1/events?service=${encodeURIComponent(service)}&instance=${encodeURIComponent(instance)}&order=desc&limit=50`).then((r) => {
    if (!alive) return;
    const seen = new Set(events.map((e) => e.seq));
    events = [...events, ...r.events.filter((e) => !seen.has(e.seq))].sort((a, b) => b.seq - a.seq);
    renderEvents();
  }).catch((e) => alive && eventsHost.replaceChildren(errorNote(e)));

  const off = subscribe((type, ev) => {
    if (type !== 'transition' || ev.service !== service || ev.instance !== instance) return;
    events = [ev, ...events.filter((e) => e.seq !== ev.seq)].slice(0, 200);
    renderEvents();
    poll();
  });

  dataHost.closest('details').addEventListener('toggle', () => renderCharts());
  const ro = new ResizeObserver(() => renderCharts());
  ro.observe(charts);
  poll();
  const timer = setInterval(poll, POLL);
  return () => { alive = false; clearInterval(timer); off(); ro.disconnect(); };
}

function phaseTotal(ph) {
  if (!ph) return 0;
  return PHASES.reduce((n, [, k]) => n + (ph[k] || 0), 0);
}
