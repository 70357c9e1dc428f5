// DeskPulse dashboard: fleet, customer and endpoint views over the JSON API.
// Every piece of text from the API goes in as a text node (el() below); no
// HTML string is ever parsed. The token lives in sessionStorage only.

const TOKEN_KEY = 'deskpulse.token';
const main = document.getElementById('main');
const crumbs = document.getElementById('crumbs');
const who = document.getElementById('who');
const logoutButton = document.getElementById('logout');
let me = null; // GET /api/v1's token: {id, role, customer?}

// ---- DOM helpers: attributes by name, children as nodes or text

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

const fmt = (v, digits = 1, unit = '') => (v === null || v === undefined ? 'no data' : `${Number(v).toFixed(digits)}${unit}`);
// "1 boot", "41 boots": a count with its noun, singular for exactly one.
const counted = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const pct = (v) => (v === null || v === undefined ? 'no data' : `${Math.round(v * 100)}%`);
const day = (ms) => new Date(ms).toISOString().slice(0, 10);
const when = (ms) => (ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : 'never');
const signed = (v) => (v === null || v === undefined ? 'no data' : `${v > 0 ? '+' : ''}${v.toFixed(1)}`);
const badge = (text, cls) => el('span', { class: `badge ${cls || text}` }, text);

// ---- the API

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  for (let attempt = 0; ; attempt++) {
    const r = await fetch(`/api/v1${path}`, { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
    const body = await r.json().catch(() => null);
    if (r.ok) return body;
    // The first assessment of the book may still be running.
    if (r.status === 503 && attempt < 60) { await new Promise((res) => setTimeout(res, 1000)); continue; }
    const message = body && body.error ? body.error.message : `HTTP ${r.status}`;
    if (r.status === 401) { sessionStorage.removeItem(TOKEN_KEY); me = null; }
    throw new ApiError(r.status, message);
  }
}

// ---- routing: #/fleet?…, #/customers/ID, #/customers/ID/endpoints/EID

function parseHash() {
  const h = location.hash.replace(/^#/, '') || '/';
  const [path, query] = h.split('?');
  return { parts: path.split('/').filter(Boolean), params: new URLSearchParams(query || '') };
}

function setCrumbs(...items) {
  crumbs.replaceChildren(...items.map((it) => (it.href ? el('a', { href: it.href }, it.text) : el('span', {}, it.text))));
}

async function render() {
  const view = el('div', { class: 'view' });
  main.replaceChildren(view);
  if (!sessionStorage.getItem(TOKEN_KEY)) return renderLogin(view);
  try {
    if (!me) me = (await api('')).token;
    who.textContent = me.role === 'vendor' ? 'vendor' : `customer-admin · ${me.customer.name}`;
    logoutButton.hidden = false;
    const { parts, params } = parseHash();
    if (parts[0] === 'customers' && parts[1] && parts[2] === 'endpoints' && parts[3]) {
      await renderEndpoint(view, parts[1], parts[3]);
    } else if (parts[0] === 'customers' && parts[1]) {
      await renderCustomer(view, parts[1], params);
    } else if (me.role === 'vendor') {
      await renderFleet(view, params);
    } else {
      // A customer-admin has no fleet: its own customer is its home.
      location.replace(`#/customers/${me.customer.id}`);
    }
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return renderLogin(view, e.message);
    view.replaceChildren(el('div', { class: 'card error', role: 'alert' },
      e instanceof ApiError && e.status === 404 ? `Not found: ${e.message}` : `Error: ${e.message}`));
  }
}

function renderLogin(view, message) {
  who.textContent = '';
  logoutButton.hidden = true;
  setCrumbs();
  const input = el('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', placeholder: 'dpa_…', required: true });
  const status = el('p', { class: 'error', role: 'alert' }, message || '');
  const form = el('form', { class: 'card login' },
    el('h1', {}, 'Log in'),
    el('label', { for: 'token' }, 'API token'), input,
    el('button', { type: 'submit' }, 'Log in'), status,
    el('p', { class: 'caption' }, 'deskpulse-collector api-token create makes one; the demo prints one.'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    me = null;
    try {
      me = (await api('')).token;
      render();
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      status.textContent = e.message;
    }
  });
  view.append(form);
}

logoutButton.addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); me = null; location.hash = '#/'; render(); });
window.addEventListener('hashchange', render);

// ---- charts (uPlot)

function noData(what) { return el('div', { class: 'nodata' }, `no data${what ? `: ${what}` : ''}`); }

function chartCard(title, caption, build) {
  const body = el('div', { class: 'chart' });
  const card = el('section', { class: 'card' }, el('h2', {}, title), el('p', { class: 'caption' }, caption), body);
  queueMicrotask(() => build(body));
  return card;
}

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

function plot(target, opts, data) {
  const width = Math.max(320, target.clientWidth || 600);
  return new uPlot({ width, height: 220, ...opts }, data, target);
}

const dayAxis = { values: (u, ticks) => ticks.map((t) => day(t * 1000).slice(5)) };

function bars(target, labels, series, yLabel) {
  const xs = labels.map((_, i) => i);
  plot(target, {
    scales: { x: { time: false } },
    axes: [{ values: (u, ticks) => ticks.map((t) => labels[t] ?? '') }, { label: yLabel }],
    series: [{ label: 'bin' }, ...series.map((s, i) => ({
      label: s.label, fill: PALETTE[i] + 'aa', stroke: PALETTE[i],
      paths: uPlot.paths.bars({ size: [0.9, 60] }), points: { show: false },
    }))],
  }, [xs, ...series.map((s) => s.values)]);
}

// ---- fleet view

function sparkline(weekly, tps) {
  const s = svg('svg', { class: 'spark', viewBox: '0 0 110 26', role: 'img' });
  const line = (pts, cls) => {
    const xy = [];
    pts.forEach((v, i) => { if (v !== null) xy.push([(i * 104 / 12 + 3).toFixed(1), (24 - v * 22 / 100).toFixed(1)]); });
    if (xy.length > 1) s.append(svg('polyline', { points: xy.map((p) => p.join(',')).join(' '), class: cls }));
    // The newest point as a dot, so that a single week still shows.
    if (xy.length) s.append(svg('circle', { cx: xy[xy.length - 1][0], cy: xy[xy.length - 1][1], r: 2, class: cls }));
    return xy.length;
  };
  line(tps, 'tps');
  const n = line(weekly, 'lhi');
  s.setAttribute('aria-label', n ? 'LHI (dark) and TPS over 13 weeks' : 'no data');
  if (!n) { const t = svg('text', { x: 2, y: 17, class: 'nodata-text' }); t.textContent = 'no data'; s.append(t); }
  return s;
}

const FLEET_SORTS = { customer: 'name', lhi: 'lhi', tps: 'tps', coverage: 'coverage', risk: 'risk' };

async function renderFleet(view, params) {
  setCrumbs({ text: 'Fleet' });
  const q = new URLSearchParams({ limit: '500' });
  for (const k of ['q', 'risk', 'tier', 'sort']) if (params.get(k)) q.set(k, params.get(k));
  const list = await api(`/customers?${q}`);
  const sort = params.get('sort') || 'risk';

  const update = (k, v) => {
    const p = new URLSearchParams(params);
    if (v) p.set(k, v); else p.delete(k);
    location.hash = `#/fleet?${p}`;
  };
  const search = el('input', { type: 'search', placeholder: 'customer name', value: params.get('q') || '', 'aria-label': 'filter by name' });
  search.addEventListener('change', () => update('q', search.value.trim()));
  const select = (name, options) => {
    const s = el('select', { 'aria-label': name }, options.map(([v, t]) => el('option', { value: v, selected: (params.get(name) || '') === v }, t)));
    s.addEventListener('change', () => update(name, s.value));
    return s;
  };
  const counts = {};
  for (const c of list.customers) counts[c.risk] = (counts[c.risk] || 0) + 1;

  const head = (label, key, cls) => {
    if (!key) return el('th', { class: cls }, label);
    const active = sort === key || sort === `-${key}`;
    const next = sort === key && key !== 'risk' ? `-${key}` : key;
    return el('th', { class: cls, 'aria-sort': active ? (sort.startsWith('-') ? 'descending' : 'ascending') : null },
      el('button', { type: 'button', class: active ? 'sorted' : '', on: { click: () => update('sort', next) } }, label));
  };
  const rows = document.createDocumentFragment();
  for (const c of list.customers) {
    rows.append(el('tr', { 'data-customer': c.id },
      el('td', {}, el('a', { href: `#/customers/${c.id}` }, c.customer)),
      el('td', {}, badge(c.risk), c.risk_reasons.length ? el('div', { class: 'reason' }, c.risk_reasons[0]) : null),
      el('td', { class: 'num' }, fmt(c.lhi)),
      el('td', { class: 'num' }, fmt(c.tps)),
      el('td', {}, sparkline(c.lhi_weekly || [], c.tps_weekly || [])),
      el('td', { class: 'num' }, signed(c.lhi_change_30d)),
      el('td', {}, c.tier ?? 'none'),
      el('td', { class: 'num' }, pct(c.coverage)),
      el('td', { class: 'num' }, c.endpoints),
      el('td', { class: 'reason' }, c.top_driver ?? 'no data')));
  }
  const table = el('table', { id: 'fleet' },
    el('thead', {}, el('tr', {}, head('Customer', 'name'), head('Risk', 'risk'), head('LHI', 'lhi', 'num'), head('TPS', 'tps', 'num'),
      head('13 weeks'), head('LHI 30 d', null, 'num'), head('Tier'), head('Coverage', 'coverage', 'num'), head('Endpoints reporting', null, 'num'), head('Top driver'))),
    el('tbody', {}, rows));
  view.append(
    el('h1', {}, 'Fleet by loyalty health'),
    el('p', { class: 'caption' }, `${counted(list.total, 'customer')} · assessed ${when(list.assessed_unix_ms)} · high ${counts.high || 0}, medium ${counts.medium || 0}, low ${counts.low || 0}, unknown ${counts.unknown || 0}`),
    el('div', { class: 'filters' }, search,
      select('risk', [['', 'any risk'], ['high', 'high'], ['medium', 'medium'], ['low', 'low'], ['unknown', 'unknown']]),
      select('tier', [['', 'any tier'], ['S', 'S'], ['A', 'A'], ['B', 'B'], ['C', 'C'], ['none', 'none']])),
    el('div', { class: 'card' }, list.customers.length ? table : noData('no customer matches')));
  requestAnimationFrame(() => { performance.mark('fleet-painted'); document.body.dataset.painted = 'fleet'; });
}

// ---- customer view

const BAND = (score) => (score === null ? 'unknown' : score >= 80 ? 'good' : score >= 60 ? 'fair' : 'poor');
const FAILURE_WORDS = {
  supported_but_failing: 'fixable (supported, failing)', partial: 'partly supported',
  unsupported: 'needs a driver (unsupported)', unknown: 'not in any catalog',
};

async function renderCustomer(view, id, params) {
  const worst = params.get('worst') || '-downtime_s';
  const [c, tel, per, hist, events, signals, eps] = await Promise.all([
    api(`/customers/${encodeURIComponent(id)}`),
    api(`/customers/${encodeURIComponent(id)}/telemetry`),
    api(`/customers/${encodeURIComponent(id)}/peripherals`),
    api(`/customers/${encodeURIComponent(id)}/history?days=91`),
    api(`/customers/${encodeURIComponent(id)}/events`),
    api(`/customers/${encodeURIComponent(id)}/signals`),
    api(`/customers/${encodeURIComponent(id)}/endpoints?sort=${encodeURIComponent(worst)}&limit=10`),
  ]);
  setCrumbs(...(me.role === 'vendor' ? [{ text: 'Fleet', href: '#/fleet' }] : []), { text: c.customer });
  const w = tel.window;
  const windowText = `${day(w.from_unix_ms)} to ${day(w.to_unix_ms - 1)} (${counted(w.days, 'day')})`;
  const coverageText = `${tel.endpoints_reporting} of ${counted(tel.endpoints_registered, 'endpoint')} reporting`;

  view.append(
    el('h1', {}, c.customer, ' ', badge(c.risk)),
    el('div', { class: 'card' },
      el('div', { class: 'kpis' },
        kpi(fmt(c.lhi), 'loyalty health (LHI)'), kpi(fmt(c.tps), 'technical performance (TPS)'),
        kpi(pct(c.coverage), 'LHI coverage'), kpi(pct(c.tps_coverage), 'TPS coverage'),
        kpi(c.contract ? c.contract.tier : 'none', 'tier'),
        kpi(c.contract ? day(c.contract.renewal_unix_ms) : 'no contract', `renewal${c.contract ? ` (${c.contract.renewal_status})` : ''}`)),
      c.risk_reasons.length ? el('ul', { class: 'plain reasons' }, c.risk_reasons.map((r) => el('li', {}, r))) : el('p', { class: 'caption' }, 'no risk reasons'),
      c.gaps.length ? el('p', { class: 'caption' }, `Missing or stale: ${c.gaps.join('; ')}`) : null),
    componentsCard(c),
    driversCard(c),
    el('div', { class: 'grid' },
      bootCard(tel, windowText, coverageText),
      phasesCard(tel, windowText),
      rttCard('Session RTT by site', tel.latency.by_site.map((s) => ({ name: `${s.site} (${counted(s.endpoints, 'endpoint')})`, days: s.days })), windowText, coverageText),
      rttCard('Session RTT by display protocol', tel.latency.by_protocol.map((s) => ({ name: s.protocol, days: s.days })), windowText, coverageText),
      stabilityCard(tel, windowText, coverageText),
      healthCard(hist, events, signals)),
    peripheralsCard(per),
    worstCard(id, eps, worst, params));
  requestAnimationFrame(() => { document.body.dataset.painted = 'customer'; });
}

function kpi(v, label) { return el('div', { class: 'kpi' }, el('div', { class: 'v' }, v), el('div', { class: 'l' }, label)); }

function componentsCard(c) {
  const comps = Object.entries(c.components).map(([name, x]) => el('div', { class: 'component' },
    el('div', {}, name, ' ', badge(x.band || 'no data', x.band || 'unknown')),
    el('div', { class: 'v' }, fmt(x.score)),
    el('div', { class: 'caption' }, `weight ${Math.round(x.weight * 100)}% · ${x.detail || 'no data in the window'}`)));
  const factors = c.factors.map((f) => el('div', { class: 'component' },
    el('div', {}, f.factor, ' ', badge(BAND(f.score) === 'unknown' ? 'no data' : BAND(f.score), BAND(f.score)),
      f.stale ? badge('stale', 'stale') : null, f.override ? badge('override', 'override') : null),
    el('div', { class: 'v' }, fmt(f.score)),
    el('div', { class: 'caption' }, `weight ${Math.round(f.weight * 100)}%`,
      f.override ? ` · set by an account manager: ${f.override.reason} (until ${day(f.override.expires_unix_ms)})` : '',
      f.inputs.length ? ` · ${f.inputs.map((i) => i.detail).join('; ')}` : '')));
  return el('section', { class: 'card' },
    el('h2', {}, 'Components of TPS'), el('p', { class: 'caption' }, `over the last ${counted(c.tps_window_days, 'day')} · coverage ${pct(c.tps_coverage)} of the weight had data`),
    el('div', { class: 'components', id: 'components' }, comps),
    el('h2', {}, 'Factors of LHI'), el('p', { class: 'caption' }, `coverage ${pct(c.coverage)} of the model had data; missing factors are left out and the weights renormalised`),
    el('div', { class: 'components' }, factors));
}

function driversCard(c) {
  return el('section', { class: 'card' }, el('h2', {}, 'What to fix first'),
    c.drivers.length
      ? el('table', { id: 'drivers' }, el('thead', {}, el('tr', {}, el('th', {}, 'Driver'), el('th', {}, 'Factor'), el('th', { class: 'num' }, 'Points of its factor'), el('th', { class: 'num' }, 'Points of LHI'))),
        el('tbody', {}, c.drivers.map((d) => el('tr', {}, el('td', {}, d.text), el('td', {}, d.factor), el('td', { class: 'num' }, `−${d.factor_points.toFixed(1)}`), el('td', { class: 'num' }, `−${d.lhi_points.toFixed(1)}`)))))
      : noData('nothing costs points'));
}

function bootCard(tel, windowText, coverageText) {
  const b = tel.boot;
  return chartCard('Boot time to login-ready', `${windowText} · ${counted(b.boots, 'boot')} · p50 ${fmt(b.p50_s, 1, ' s')}, p95 ${fmt(b.p95_s, 1, ' s')} · ${coverageText}`, (t) => {
    if (!b.histogram) return t.append(noData('no boots in the window'));
    const labels = b.histogram.bins.map((x) => (x.to_s === null ? `≥${x.from_s}` : `${x.from_s}`));
    bars(t, labels, [{ label: 'boots', values: b.histogram.bins.map((x) => x.boots) }], 'boots');
  });
}

function phasesCard(tel, windowText) {
  const phases = tel.boot.phases.filter((p) => p.mean_s !== null);
  const total = phases.reduce((a, p) => a + p.mean_s, 0);
  const card = el('section', { class: 'card' }, el('h2', {}, 'Boot phases'),
    el('p', { class: 'caption' }, `${windowText} · mean of the boots that report each phase: firmware, loader, kernel, initrd, userspace → login-ready → desktop-ready`));
  if (!phases.length) { card.append(noData('no boot phases in the window')); return card; }
  const stack = el('div', { class: 'stack', role: 'img', 'aria-label': 'boot phases' });
  const legend = el('div', { class: 'legend' });
  tel.boot.phases.forEach((p, i) => {
    if (p.mean_s === null) { legend.append(el('span', {}, `${p.phase}: no data`)); return; }
    const seg = el('div', { class: `p${i}`, title: `${p.phase} ${p.mean_s} s` });
    seg.style.width = `${(100 * p.mean_s / total).toFixed(2)}%`;
    stack.append(seg);
    legend.append(el('span', {}, el('span', { class: `swatch p${i}` }), `${p.phase} ${p.mean_s.toFixed(1)} s (${counted(p.boots, 'boot')})`));
  });
  card.append(stack, legend);
  return card;
}

function rttCard(title, groups, windowText, coverageText) {
  return chartCard(title, `${windowText} · daily median and 95th percentile over session time of each minute's RTT p95 · ${coverageText}`, (t) => {
    const has = groups.some((g) => g.days.some((d) => d.rtt_p95_ms !== null));
    if (!has) return t.append(noData('no session windows in the window'));
    const xs = groups[0].days.map((d) => d.day_unix_ms / 1000);
    const series = [{}];
    const data = [xs];
    groups.slice(0, PALETTE.length).forEach((g, i) => {
      series.push({ label: `${g.name} p95`, stroke: PALETTE[i], width: 2 });
      data.push(g.days.map((d) => d.rtt_p95_ms));
      series.push({ label: `${g.name} p50`, stroke: PALETTE[i], dash: [4, 4] });
      data.push(g.days.map((d) => d.rtt_p50_ms));
    });
    plot(t, { axes: [dayAxis, { label: 'ms' }], series }, data);
  });
}

function stabilityCard(tel, windowText, coverageText) {
  return chartCard('Stability', `${windowText} · unplanned disconnects, crashes and stalls per day · ${coverageText}`, (t) => {
    const days = tel.days;
    if (!days.some((d) => d.reports)) return t.append(noData('no reports in the window'));
    const xs = days.map((d) => d.day_unix_ms / 1000);
    const v = (k) => days.map((d) => (d.reports ? d[k] : null));
    plot(t, {
      axes: [dayAxis, { label: 'per day' }],
      series: [{}, ...['disconnects', 'crashes', 'stalls'].map((k, i) => ({ label: k, stroke: PALETTE[i + 3], fill: PALETTE[i + 3] + '55', paths: uPlot.paths.bars({ size: [0.3, 12] }) }))],
    }, [xs, v('disconnects'), v('crashes'), v('stalls')]);
  });
}

function healthCard(hist, events, signals) {
  const marks = [
    ...events.events.map((e) => ({ at: e.at_unix_ms, text: `risk ${e.from} → ${e.to}: ${e.reasons.join('; ')}` })),
    ...(signals.contract ? [{ at: signals.contract.renewal_unix_ms, text: `renewal (${signals.contract.renewal_status})` }] : []),
    ...signals.surveys.map((s) => ({ at: s.date_unix_ms, text: `survey: NPS ${fmt(s.nps, 0)}, ${counted(s.respondents, 'respondent')}` })),
    ...signals.reviews.map((r) => ({ at: r.date_unix_ms, text: 'business review' })),
  ].sort((a, b) => a.at - b.at);
  const from = hist.days.length ? hist.days[0].day_unix_ms : null;
  const shown = from === null ? [] : marks.filter((m) => m.at >= from && m.at <= Date.now() + 400 * 86400000);
  const card = chartCard('Health timeline', `daily snapshots over the last 91 days (${counted(hist.days.length, 'day')} recorded) · marks: risk changes, renewal, surveys, reviews`, (t) => {
    if (!hist.days.length) return t.append(noData('no daily snapshots yet'));
    const xs = hist.days.map((d) => d.day_unix_ms / 1000);
    const markAt = shown.map((m) => m.at / 1000);
    plot(t, {
      axes: [dayAxis, { label: 'score' }],
      scales: { y: { range: [0, 100] } },
      series: [{}, { label: 'LHI', stroke: PALETTE[0], width: 2, points: { show: true } }, { label: 'TPS', stroke: PALETTE[7], points: { show: true } }],
      hooks: {
        draw: [(u) => {
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = '#c62828';
          ctx.setLineDash([3, 3]);
          for (const x of markAt) {
            const px = u.valToPos(x, 'x', true);
            if (px < u.bbox.left || px > u.bbox.left + u.bbox.width) continue;
            ctx.beginPath(); ctx.moveTo(px, u.bbox.top); ctx.lineTo(px, u.bbox.top + u.bbox.height); ctx.stroke();
          }
          ctx.restore();
        }],
      },
    }, [xs, hist.days.map((d) => d.lhi), hist.days.map((d) => d.tps)]);
  });
  card.append(marks.length ? el('ul', { class: 'plain', id: 'timeline' }, marks.map((m) => el('li', {}, `${day(m.at)}: ${m.text}`))) : el('p', { class: 'caption' }, 'no events'));
  return card;
}

function peripheralsCard(per) {
  const card = el('section', { class: 'card' }, el('h2', {}, 'Peripheral compatibility by device model'),
    el('p', { class: 'caption' }, `${day(per.window.from_unix_ms)} to ${day(per.window.to_unix_ms - 1)} (${counted(per.window.days, 'day')}) · ${per.compatibility.device_instances.working} working and ${counted(per.compatibility.device_instances.failed, 'failing device instance')} on ${counted(per.compatibility.endpoints, 'endpoint')} · ${per.compatibility.detail || ''}`));
  const models = [...per.failing_models, ...per.working_models];
  if (!models.length) { card.append(noData('no peripherals seen in the window')); return card; }
  card.append(el('div', { class: 'split' }, Object.entries(per.failures).map(([k, v]) =>
    el('div', { class: 'kpi' }, el('div', { class: 'v' }, v.endpoints), el('div', { class: 'l' }, `endpoints · ${FAILURE_WORDS[k] || k} (${counted(v.models, 'model')})`)))));
  card.append(el('table', { id: 'peripherals' },
    el('thead', {}, el('tr', {}, ['Device', 'Verdict', 'What it needs', 'Endpoints failing', 'Instances failing / working', 'Example'].map((h) => el('th', {}, h)))),
    el('tbody', {}, models.map((m) => el('tr', { class: m.failed ? 'failing' : '' },
      el('td', {}, m.name || m.model, el('div', { class: 'mono reason' }, m.usb_id || m.ieee1284 || m.model)),
      el('td', {}, m.verdict, m.driver ? el('div', { class: 'reason' }, `driver ${m.driver}`) : null),
      el('td', {}, m.failed ? (FAILURE_WORDS[m.failure] || m.failure) : 'working'),
      el('td', { class: 'num' }, `${m.endpoints_failed} of ${m.endpoints}`),
      el('td', { class: 'num' }, `${m.failed} / ${m.working}`),
      el('td', { class: 'reason' }, m.example_reason || ''))))));
  return card;
}

const WORST = { '-downtime_s': 'downtime', '-boot_p95_s': 'boot p95', '-rtt_p95_ms': 'RTT p95', '-disconnects': 'disconnects', '-crashes': 'crashes' };

function worstCard(id, eps, worst, params) {
  const pick = el('select', { 'aria-label': 'worst by' }, Object.entries(WORST).map(([v, t]) => el('option', { value: v, selected: v === worst }, t)));
  pick.addEventListener('change', () => { const p = new URLSearchParams(params); p.set('worst', pick.value); location.hash = `#/customers/${id}?${p}`; });
  const card = el('section', { class: 'card' }, el('h2', {}, 'Worst endpoints by ', pick),
    el('p', { class: 'caption' }, `${day(eps.window.from_unix_ms)} to ${day(eps.window.to_unix_ms - 1)} · ${counted(eps.total, 'endpoint')}`));
  if (!eps.endpoints.length) { card.append(noData('no endpoints')); return card; }
  card.append(el('table', { id: 'worst' },
    el('thead', {}, el('tr', {}, ['Endpoint', 'Site', 'Pool', 'Boot p95', 'RTT p95', 'Disconnects', 'Crashes', 'Downtime', 'Last seen'].map((h) => el('th', {}, h)))),
    el('tbody', {}, eps.endpoints.map((e) => {
      const x = e.window;
      return el('tr', {},
        el('td', {}, el('a', { href: `#/customers/${id}/endpoints/${e.id}` }, e.hostname || e.agent_id)),
        el('td', {}, e.site || '—'), el('td', {}, e.pool || '—'),
        el('td', { class: 'num' }, x ? fmt(x.boot_p95_s, 1, ' s') : 'no data'),
        el('td', { class: 'num' }, x ? fmt(x.rtt_p95_ms, 0, ' ms') : 'no data'),
        el('td', { class: 'num' }, x ? x.disconnects : 'no data'),
        el('td', { class: 'num' }, x ? x.crashes : 'no data'),
        el('td', { class: 'num' }, x ? fmt(x.downtime_s, 0, ' s') : 'no data'),
        el('td', {}, when(e.last_seen_unix_ms)));
    }))));
  return card;
}

// ---- endpoint view

async function renderEndpoint(view, cid, eid) {
  const base = `/customers/${encodeURIComponent(cid)}/endpoints/${encodeURIComponent(eid)}`;
  const [e, hist] = await Promise.all([api(base), api(`${base}/history?days=30`)]);
  setCrumbs(...(me.role === 'vendor' ? [{ text: 'Fleet', href: '#/fleet' }] : []), { text: e.customer, href: `#/customers/${cid}` }, { text: e.hostname || e.agent_id });
  const r = e.latest_report;
  const kv = (pairs) => el('dl', { class: 'kv' }, pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v ?? '—')]));
  view.append(el('h1', {}, e.hostname || e.agent_id),
    el('div', { class: 'grid' },
      el('section', { class: 'card' }, el('h2', {}, 'Endpoint'), kv([['agent', e.agent_id], ['site', e.site], ['pool', e.pool], ['OS', e.os], ['kernel', e.kernel], ['agent version', e.agent_version], ['first seen', when(e.first_seen_unix_ms)], ['last seen', when(e.last_seen_unix_ms)]])),
      el('section', { class: 'card' }, el('h2', {}, 'Latest report'), r ? kv([
        ['observed', when(r.observed_at_unix_ms)], ['sequence', r.seq],
        ['boot to login-ready', r.boot && r.boot.login_ready_ms !== undefined ? `${(r.boot.login_ready_ms / 1000).toFixed(1)} s` : 'no data'],
        ['boot to desktop-ready', r.boot && r.boot.desktop_ready_ms !== undefined ? `${(r.boot.desktop_ready_ms / 1000).toFixed(1)} s` : 'no data'],
        ['session windows', (r.sessions || []).length],
        ['RTT p95 (latest window)', r.sessions && r.sessions.length && r.sessions[r.sessions.length - 1].rtt_p95_us !== undefined ? `${(r.sessions[r.sessions.length - 1].rtt_p95_us / 1000).toFixed(0)} ms` : 'no data'],
        ['crashes', r.stability ? (r.stability.crashes || []).length : 'no data'],
        ['session events', r.stability ? (r.stability.session_events || []).length : 'no data'],
      ]) : noData('no report rolled up yet')),
      chartCard('History', `the last 30 days · ${counted(hist.days.length, 'day')} with reports`, (t) => {
        if (!hist.days.length) return t.append(noData('no days with reports'));
        plot(t, {
          axes: [dayAxis, { label: 's / count' }],
          series: [{}, { label: 'boot p95 s', stroke: PALETTE[0], width: 2 }, { label: 'RTT p95 ms', stroke: PALETTE[1] }, { label: 'disconnects', stroke: PALETTE[3] }, { label: 'crashes', stroke: PALETTE[4] }],
        }, [hist.days.map((d) => d.day_unix_ms / 1000), hist.days.map((d) => d.boot_p95_s), hist.days.map((d) => d.rtt_p95_ms), hist.days.map((d) => d.disconnects), hist.days.map((d) => d.crashes)]);
      })),
    devicesCard(e));
  requestAnimationFrame(() => { document.body.dataset.painted = 'endpoint'; });
}

function devicesCard(e) {
  const devices = e.devices || [];
  const failing = devices.filter((d) => d.failed_in_window).length;
  const card = el('section', { class: 'card' }, el('h2', {}, 'Devices and their states'),
    el('p', { class: 'caption' }, `seen in the last ${counted(e.devices_window_days, 'day')} · ${counted(devices.length, 'device')}, ${failing} failing at some point · each as last reported`));
  if (!devices.length) { card.append(noData(`no devices seen in the last ${counted(e.devices_window_days, 'day')}`)); return card; }
  card.append(el('table', { id: 'devices' },
    el('thead', {}, el('tr', {}, ['Device', 'Bus', 'ID', 'State', 'Reason', 'Verdict', 'Last seen', 'Failing reports'].map((h) => el('th', {}, h)))),
    el('tbody', {}, devices.map((d) => el('tr', { class: d.failed_in_window ? 'failing' : '' },
      el('td', {}, d.name || d.model || '—'), el('td', {}, (d.bus || '').replace('PERIPHERAL_BUS_', '').toLowerCase()),
      el('td', { class: 'mono' }, d.ieee1284_id ? d.model : d.id),
      el('td', {}, (d.state || '').replace('DEVICE_STATE_', '').toLowerCase()),
      el('td', { class: 'reason' }, d.reason || ''),
      el('td', {}, d.verdict, el('div', { class: 'reason' }, d.classified_by ? `by ${d.classified_by === 'agent' ? 'the endpoint' : 'the collector'}'s catalog${d.driver ? `, driver ${d.driver}` : ''}` : 'no catalog')),
      el('td', {}, when(d.last_seen_unix_ms)),
      el('td', { class: 'num' }, `${d.fail_observations} of ${d.observations}`))))));
  return card;
}

render();
