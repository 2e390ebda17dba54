// Hand-written SVG charts: a time-series line chart with threshold lines,
// a state strip, and stacked phase bars. Series differ by dash pattern and
// marker as well as colour, and every chart has a text legend and a data
// table next to it.

import { s, h, fmtClock } from './util.js';

// niceTicks returns about n round tick values covering [lo, hi].
export function niceTicks(lo, hi, n = 4) {
  const span = hi - lo || 1;
  const raw = span / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((st) => st >= raw) || 10 * mag;
  const out = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(12));
  if (out[out.length - 1] < hi) out.push(+(out[out.length - 1] + step).toFixed(12));
  return out;
}

const TIME_STEPS = [5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3];

let clipSeq = 0;

// lineChart draws series of [t(ms), value|null] points between t0 and t1.
// A series with scale:false does not stretch the y axis (it is clipped at
// the top instead): the silence line, which grows without bound once an
// instance is gone, must not flatten everything else.
export function lineChart({ width, height = 190, t0, t1, series, yFormat = String, yMin = 0, yFloor = 0, thresholds = [], label }) {
  const m = { l: 64, r: 14, t: 12, b: 26 };
  const W = Math.max(260, Math.round(width));
  const H = height;
  const iw = W - m.l - m.r;
  const ih = H - m.t - m.b;
  let ymax = yFloor;
  for (const se of series) {
    if (se.scale === false) continue;
    for (const [, v] of se.points) if (v !== null && v > ymax) ymax = v;
  }
  for (const th of thresholds) ymax = Math.max(ymax, th.v * 1.15);
  if (!(ymax > yMin)) ymax = yMin + 1;
  const ticks = niceTicks(yMin, ymax * 1.05, 4);
  ymax = ticks[ticks.length - 1];
  const span = Math.max(1, t1 - t0);
  const x = (t) => m.l + ((t - t0) / span) * iw;
  const y = (v) => m.t + ih - ((Math.min(v, ymax * 1.02) - yMin) / (ymax - yMin)) * ih;

  const clipId = `clip${++clipSeq}`;
  const svg = s('svg', { class: 'chart', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label },
    s('defs', null, s('clipPath', { id: clipId }, s('rect', { x: m.l, y: m.t - 2, width: iw, height: ih + 2 }))));

  for (const tv of ticks) {
    svg.append(s('line', { class: 'grid', x1: m.l, x2: W - m.r, y1: y(tv), y2: y(tv) }));
    svg.append(s('text', { class: 'tick', x: m.l - 6, y: y(tv) + 4, 'text-anchor': 'end' }, yFormat(tv)));
  }
  const step = TIME_STEPS.find((st) => span / st <= Math.max(2, Math.floor(iw / 90))) || TIME_STEPS[TIME_STEPS.length - 1];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    svg.append(s('line', { class: 'grid grid-x', x1: x(t), x2: x(t), y1: m.t, y2: m.t + ih }));
    svg.append(s('text', { class: 'tick', x: x(t), y: H - 8, 'text-anchor': 'middle' }, fmtClock(t)));
  }
  svg.append(s('line', { class: 'axis', x1: m.l, x2: W - m.r, y1: m.t + ih, y2: m.t + ih }));

  for (const th of thresholds) {
    svg.append(s('line', { class: `threshold ${th.cls || ''}`, x1: m.l, x2: W - m.r, y1: y(th.v), y2: y(th.v) }));
    svg.append(s('text', { class: 'tick threshold-label', x: W - m.r - 4, y: y(th.v) - 4, 'text-anchor': 'end' }, th.label));
  }

  const g = s('g', { 'clip-path': `url(#${clipId})` });
  for (const se of series) {
    let d = '';
    let pen = false;
    let prevY = null;
    for (const [t, v] of se.points) {
      if (v === null || v === undefined || t < t0) { pen = false; continue; }
      if (se.step && pen && prevY !== null) d += `H${x(t).toFixed(1)}`;
      d += `${pen ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
      prevY = v;
    }
    if (d) g.append(s('path', { class: `line ${se.cls}`, d }));
    if (se.markers) {
      for (const [t, v] of se.points) {
        if (v === null || v === undefined || t < t0) continue;
        g.append(marker(se.markers, x(t), y(v), se.cls));
      }
    }
  }
  svg.append(g);
  return svg;
}

function marker(kind, cx, cy, cls) {
  if (kind === 'square') return s('rect', { class: `marker ${cls}`, x: cx - 2.5, y: cy - 2.5, width: 5, height: 5 });
  if (kind === 'triangle') return s('path', { class: `marker ${cls}`, d: `M${cx},${cy - 3.5}L${cx + 3.5},${cy + 3}L${cx - 3.5},${cy + 3}Z` });
  return s('circle', { class: `marker ${cls}`, cx, cy, r: 2.5 });
}

// legend lists series with a sample of their line and their latest value.
export function legend(items) {
  return h('ul', { class: 'legend' }, items.map((it) => h('li', null,
    svgSwatch(it), ' ', h('span', null, it.name), it.value !== undefined ? h('strong', { class: 'legend-value' }, ` ${it.value}`) : '')));
}

function svgSwatch(it) {
  const sw = s('svg', { width: 26, height: 10, 'aria-hidden': 'true', class: 'swatch' },
    s('line', { class: `line ${it.cls}`, x1: 1, x2: 25, y1: 5, y2: 5 }));
  if (it.markers) sw.append(marker(it.markers, 13, 5, it.cls));
  return sw;
}

// stateStrip draws the instance's state over time as coloured bands with
// the state's name written in every band wide enough for it.
export function stateStrip({ width, t0, t1, spans, label }) {
  const m = { l: 64, r: 14 };
  const W = Math.max(260, Math.round(width));
  const H = 22;
  const iw = W - m.l - m.r;
  const span = Math.max(1, t1 - t0);
  const x = (t) => m.l + ((Math.max(t, t0) - t0) / span) * iw;
  const svg = s('svg', { class: 'chart strip', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label });
  svg.append(s('text', { class: 'tick', x: m.l - 6, y: 15, 'text-anchor': 'end' }, 'state'));
  for (const sp of spans) {
    if (sp.t1 < t0) continue;
    const x0 = x(sp.t0);
    const w = Math.max(1, x(sp.t1) - x0);
    svg.append(s('rect', { class: `band s-fill-${sp.state}`, x: x0, y: 2, width: w, height: H - 4 },
      s('title', null, `${sp.state} from ${fmtClock(sp.t0)} to ${fmtClock(sp.t1)}`)));
    if (w > sp.state.length * 7 + 8) {
      svg.append(s('text', { class: `band-label s-text-${sp.state}`, x: x0 + 4, y: 15 }, sp.state));
    }
  }
  return svg;
}

export const PHASES = [
  ['DNS', 'dns_ns'], ['Connect', 'connect_ns'], ['TLS', 'tls_ns'], ['TTFB', 'ttfb_ns'], ['Transfer', 'transfer_ns'],
];

// phaseBar draws one probe's phases as a stacked horizontal bar scaled to
// max (ns). The numbers are in the table cells beside it.
export function phaseBar(phases, max) {
  const bar = h('div', { class: 'phasebar', 'aria-hidden': 'true' });
  for (const [label, key] of PHASES) {
    const v = phases[key] || 0;
    const cls = key.replace('_ns', '');
    if (v <= 0 || max <= 0) continue;
    const seg = h('span', { class: `phase ph-${cls}`, title: `${label}` });
    seg.style.width = `${Math.max(0.5, (v / max) * 100)}%`;
    bar.append(seg);
  }
  return bar;
}
