// Janus's query page: one box for PromQL, LetheQL and LogQL, answered by Janus's own APIs.
// Plain JavaScript, no build step: the file is embedded in the binary as written. The only
// library is uPlot (vendored). State lives in the URL, in Prometheus's link format, so links
// written for Prometheus's page — and alerts' generatorURLs — open here.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    form: $('query-form'), expr: $('expr'), lang: $('lang'), range: $('range'), end: $('end'),
    step: $('step'), limit: $('limit'), stacked: $('stacked'), live: $('live'),
    labelsToggle: $('labels-toggle'), history: $('history'), error: $('error'),
    labelBrowser: $('label-browser'), labelFilter: $('label-filter'), labelNames: $('label-names'),
    labelValues: $('label-values'), tabGraph: $('tab-graph'), tabTable: $('tab-table'), info: $('info'),
    graphView: $('graph-view'), tableView: $('table-view'), logsView: $('logs-view'), chart: $('chart'),
    table: $('table'), volume: $('volume'), logList: $('log-list'), logSpacer: $('log-spacer'),
    more: $('more'), logCount: $('log-count'), logDetail: $('log-detail'),
  };

  /** Height of one log row in pixels: rows are fixed-height so that only the visible ones exist. */
  const ROW = 20;
  /** Rows drawn above and below the visible ones, so that scrolling does not show blanks. */
  const OVERSCAN = 15;
  /** Lines the page holds at most (live mode drops the oldest beyond it). */
  const MAX_HELD = 100000;
  /** Series a graph draws at most; the rest are counted in the info line. */
  const MAX_SERIES = 250;
  /** Rows a table shows at most. */
  const MAX_ROWS = 10000;
  const LIVE_EVERY_MS = 2000;
  const HISTORY_KEY = 'janus.history';
  const PALETTE = ['#2f6fd6', '#e8590c', '#2b8a3e', '#c2255c', '#7048e8', '#0b7285', '#e67700',
    '#5c940d', '#a61e4d', '#1864ab', '#862e9c', '#d9480f'];

  const state = {
    tab: 0, gen: 0, controller: null, plot: null, volumePlot: null, lastDraw: null,
    lines: [], seen: new Set(), exhausted: true, liveTimer: null, highlight: null,
    selected: -1, query: null, firstResultMs: null,
  };

  // ---- Times and durations -------------------------------------------------------------

  const UNITS = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };

  /** Seconds in a Prometheus duration (`1h30m`, `5m`, `90s`) or a plain number of seconds. */
  function parseDuration(text) {
    const s = text.trim();
    if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
    const re = /(\d+)(ms|s|m|h|d|w|y)/gy;
    let total = 0, m, at = 0;
    while ((m = re.exec(s)) !== null) { total += Number(m[1]) * UNITS[m[2]]; at = re.lastIndex; }
    if (at !== s.length || at === 0) throw new Error(`"${text}" is not a duration (30s, 5m, 1h, 2d, 1w)`);
    return total;
  }

  function formatDuration(seconds) {
    for (const [u, f] of [['w', 604800], ['d', 86400], ['h', 3600], ['m', 60], ['s', 1]]) {
      if (seconds >= f && seconds % f === 0) return `${seconds / f}${u}`;
    }
    return `${seconds}s`;
  }

  /** Milliseconds since the epoch for the End box: now, Unix seconds, RFC 3339, or
   *  `YYYY-MM-DD HH:MM[:SS]` read as UTC (the format of Prometheus's `g0.end_input`). */
  function parseEnd(text) {
    const s = text.trim();
    if (s === '' || s === 'now') return Date.now();
    if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
    const plain = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(:\d{2}(\.\d+)?)?)$/.exec(s);
    const ms = Date.parse(plain ? `${plain[1]}T${plain[2]}Z` : s);
    if (Number.isNaN(ms)) throw new Error(`"${text}" is not a time (now, 2024-09-24 15:00:00, RFC 3339 or Unix seconds)`);
    return ms;
  }

  const NS_PER_MS = 1000000n;

  /** RFC 3339 with nanoseconds, which both APIs read: the log pages' bounds are exact. */
  function nsToRfc3339(ns) {
    const ms = ns / NS_PER_MS;
    const rest = ns % 1000000000n;
    const iso = new Date(Number(ms)).toISOString(); // 2024-01-01T00:00:00.000Z
    return `${iso.slice(0, 19)}.${rest.toString().padStart(9, '0')}Z`;
  }

  function showTime(ns) {
    return new Date(Number(ns / NS_PER_MS)).toISOString().replace('T', ' ').replace('Z', '');
  }

  /** The window the controls describe, or an error naming the box that is wrong. */
  function timeWindow() {
    const rangeS = parseDuration(el.range.value || '1h');
    if (rangeS <= 0) throw new Error('the range must be longer than 0s');
    const endMs = parseEnd(el.end.value);
    return { startMs: endMs - rangeS * 1000, endMs, rangeS };
  }

  function stepSeconds(rangeS) {
    const typed = el.step.value.trim();
    if (typed !== '' && typed !== 'auto') {
      const s = parseDuration(typed);
      if (s <= 0) throw new Error('the step must be longer than 0s');
      return s;
    }
    // Prometheus's page: range / 250, at least a second, and never more than 11,000 points.
    return Math.max(1, Math.round(rangeS / 250), Math.ceil(rangeS / 11000));
  }

  // ---- Which language, which API -------------------------------------------------------

  function withoutStrings(s) {
    return s.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  }

  /** Where an expression goes. PromQL and LetheQL (`pod{…}`, `node{…}`) go to the Prometheus
   *  API, which Janus routes between the upstream and its log store; LogQL to the Loki API.
   *  `lines` says the answer is log lines rather than numbers. Auto takes an expression whose
   *  first selector has no metric name (`{app="x"} |= …`, `rate({app="x"}[5m])`) for LogQL. */
  function classify(expr, choice) {
    const s = withoutStrings(expr).trim();
    const lethe = /^(pod|node)\s*\{/.test(s);
    if (choice === 'logql') return { api: 'loki', lines: /^\{/.test(s) };
    if (choice === 'promql') return { api: 'prom', lines: lethe };
    if (lethe) return { api: 'prom', lines: true };
    if (/__name__/.test(s) || /\b(pod|node)\s*\{/.test(s)) return { api: 'prom', lines: false };
    if (/^\{/.test(s)) return { api: 'loki', lines: true };
    if (/(^|[^\w:}\]\s])\s*\{[^}]*\}\s*(\||!=|!~|\[)/.test(s)) return { api: 'loki', lines: false };
    return { api: 'prom', lines: false };
  }

  // ---- Talking to Janus ----------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, type) { super(message); this.type = type; }
  }

  /** One API call; the answer's `data` and `warnings`, or an ApiError with the API's words. */
  async function call(path, params, method) {
    const body = new URLSearchParams(params);
    const init = { credentials: 'same-origin', signal: state.controller && state.controller.signal };
    let url = path;
    if (method === 'POST') {
      init.method = 'POST';
      init.body = body;
      init.headers = { 'Content-Type': 'application/x-www-form-urlencoded' };
    } else {
      url = `${path}?${body}`;
    }
    const response = await fetch(url, init);
    const text = await response.text();
    let json = null;
    try { json = JSON.parse(text); } catch (_) { /* not JSON: reported below */ }
    if (json && json.status === 'success') return json;
    if (json && json.error) throw new ApiError(json.error, json.errorType);
    // Loki's face words some errors as plain text, as Loki does; an empty body gets its status.
    const words = text.trim().slice(0, 2000);
    throw new ApiError(words || `${response.status} ${response.statusText}`, 'http');
  }

  const seconds = (ms) => (ms / 1000).toFixed(3);

  // ---- Running a query -----------------------------------------------------------------

  function setState(s) { document.body.dataset.state = s; }

  function show(view) {
    for (const v of [el.graphView, el.tableView, el.logsView]) v.hidden = v !== view;
  }

  async function run(remember) {
    const expr = el.expr.value.trim();
    const gen = ++state.gen;
    stopLive();
    if (state.controller) state.controller.abort();
    state.controller = new AbortController();
    hideError();
    writeUrl();
    if (expr === '') { setState('idle'); el.info.textContent = ''; show(null); return; }
    if (remember) addToHistory(expr);
    setState('running');
    el.info.textContent = 'running…';
    const started = performance.now();
    const kind = classify(expr, el.lang.value);
    state.query = { expr, kind };
    try {
      const win = timeWindow();
      let note;
      if (kind.lines) note = await runLines(gen, expr, kind, win);
      else if (state.tab === 1) note = await runTable(gen, expr, kind, win);
      else note = await runGraph(gen, expr, kind, win);
      if (gen !== state.gen) return;
      el.info.textContent = `${note} · ${Math.round(performance.now() - started)} ms`;
      setState('done');
      if (el.live.checked && state.query.kind.lines) startLive();
    } catch (e) {
      if (gen !== state.gen || e.name === 'AbortError') return;
      showError(e, expr);
      el.info.textContent = '';
      setState('error');
    }
  }

  function warningsNote(answer, paged) {
    // A page of lines is cut at the limit by design: "Older lines" fetches the next.
    const w = (answer.warnings || []).filter((x) => !(paged && /truncated due to limit/.test(x)));
    return w.length ? ` · ⚠ ${w.join('; ')}` : '';
  }

  async function runGraph(gen, expr, kind, win) {
    const step = stepSeconds(win.rangeS);
    const path = kind.api === 'loki' ? 'loki/api/v1/query_range' : 'api/v1/query_range';
    const answer = await call(path, {
      query: expr, start: seconds(win.startMs), end: seconds(win.endMs), step: String(step),
    }, 'POST');
    if (gen !== state.gen) return '';
    const data = answer.data;
    if (data.resultType === 'streams' || data.resultType === 'logs') {
      return showLines(gen, expr, kind, win, answer, null);
    }
    if (data.resultType !== 'matrix') {
      fillTable(data);
      show(el.tableView);
      return `${data.resultType}${warningsNote(answer)}`;
    }
    show(el.graphView);
    const drawn = drawGraph(data.result, win.startMs / 1000, win.endMs / 1000, step);
    return `${data.result.length} series${drawn < data.result.length ? ` (${drawn} drawn)` : ''} · step ${formatDuration(step)}${warningsNote(answer)}`;
  }

  async function runTable(gen, expr, kind, win) {
    const path = kind.api === 'loki' ? 'loki/api/v1/query' : 'api/v1/query';
    const answer = await call(path, { query: expr, time: seconds(win.endMs) }, 'POST');
    if (gen !== state.gen) return '';
    if (answer.data.resultType === 'streams' || answer.data.resultType === 'logs') {
      return showLines(gen, expr, kind, win, answer, null);
    }
    const rows = fillTable(answer.data);
    show(el.tableView);
    return `${rows} ${rows === 1 ? 'row' : 'rows'}${warningsNote(answer)}`;
  }

  // ---- Graphs --------------------------------------------------------------------------

  function seriesName(metric) {
    const labels = Object.keys(metric).filter((k) => k !== '__name__').sort();
    const inner = labels.map((k) => `${k}=${JSON.stringify(metric[k])}`).join(', ');
    const name = metric.__name__ || '';
    return labels.length || !name ? `${name}{${inner}}` : name;
  }

  function number(v) {
    if (v === '+Inf' || v === 'Inf') return Infinity;
    if (v === '-Inf') return -Infinity;
    return Number(v);
  }

  /** Width for plots: the tab bar spans the content, and is never hidden. */
  function contentWidth() {
    return Math.max(300, el.info.parentElement.clientWidth || 800);
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function axis() {
    const grid = { stroke: cssVar('--line'), width: 1 };
    return { stroke: cssVar('--muted'), grid, ticks: grid };
  }

  const utc = (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC');

  function fmtValue(v) {
    if (v === null || v === undefined) return '—';
    if (!Number.isFinite(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
    return String(Math.round(v * 1e4) / 1e4);
  }

  /** Draws a matrix on a time grid from start by step; returns how many series were drawn. */
  function drawGraph(result, startS, endS, step) {
    state.lastDraw = () => drawGraph(result, startS, endS, step);
    const n = Math.max(1, Math.floor((endS - startS) / step) + 1);
    const xs = new Array(n);
    for (let i = 0; i < n; i++) xs[i] = startS + i * step;
    const shown = result.slice(0, MAX_SERIES);
    const raw = shown.map((s) => {
      const ys = new Array(n).fill(null);
      for (const [t, v] of s.values || []) {
        const i = Math.round((t - startS) / step);
        if (i >= 0 && i < n) ys[i] = number(v);
      }
      return ys;
    });
    const stacked = el.stacked.checked;
    let ys = raw;
    if (stacked) {
      const sum = new Array(n).fill(0);
      ys = raw.map((r) => r.map((v, i) => (v === null ? null : (sum[i] += Number.isFinite(v) ? v : 0))));
    }
    const series = [{ value: (u, t) => (t == null ? '—' : utc(t).toISOString().replace('T', ' ').slice(0, 19)) }];
    shown.forEach((s, k) => {
      const color = PALETTE[k % PALETTE.length];
      series.push({
        label: seriesName(s.metric || {}),
        stroke: color,
        width: 1.5,
        fill: stacked ? `${color}40` : undefined,
        spanGaps: false,
        points: { show: (u) => n < 60 },
        value: (u, v, si, i) => fmtValue(i == null ? null : raw[si - 1][i]),
      });
    });
    const opts = {
      width: contentWidth(),
      height: 360,
      tzDate: (ts) => utc(ts),
      scales: { x: { time: true } },
      axes: [axis(), { ...axis(), size: 60, values: (u, vals) => vals.map(fmtValue) }],
      series,
      legend: { live: true },
      cursor: { focus: { prox: 16 } },
      focus: { alpha: 0.35 },
    };
    if (stacked && shown.length > 1) {
      opts.bands = shown.slice(1).map((_, k) => ({ series: [k + 2, k + 1] }));
    }
    if (state.plot) state.plot.destroy();
    el.chart.replaceChildren();
    state.plot = new uPlot(opts, [xs, ...ys], el.chart);
    el.chart.dataset.series = String(shown.length);
    el.chart.dataset.points = String(raw.reduce((c, r) => c + r.filter((v) => v !== null).length, 0));
    return shown.length;
  }

  // ---- Tables --------------------------------------------------------------------------

  function fillTable(data) {
    const body = el.table.tBodies[0];
    body.replaceChildren();
    const add = (series, value) => {
      const tr = body.insertRow();
      tr.insertCell().textContent = series;
      tr.insertCell().textContent = value;
    };
    let rows = 0;
    if (data.resultType === 'vector') {
      for (const s of data.result.slice(0, MAX_ROWS)) add(seriesName(s.metric || {}), s.value ? s.value[1] : '');
      rows = data.result.length;
    } else if (data.resultType === 'matrix') {
      for (const s of data.result.slice(0, MAX_ROWS)) {
        add(seriesName(s.metric || {}), (s.values || []).map(([t, v]) => `${v} @${t}`).join('\n'));
      }
      rows = data.result.length;
    } else if (data.resultType === 'scalar' || data.resultType === 'string') {
      add(data.resultType, data.result ? data.result[1] : '');
      rows = 1;
    }
    if (rows === 0) add('no data', '');
    el.table.dataset.rows = String(rows);
    return rows;
  }

  // ---- Log lines -----------------------------------------------------------------------

  function pageLimit() {
    const n = Number(el.limit.value);
    return Number.isInteger(n) && n > 0 ? n : 1000;
  }

  async function fetchLines(kind, expr, startNs, endNs, direction, limit) {
    const params = {
      query: expr, start: nsToRfc3339(startNs), end: nsToRfc3339(endNs),
      limit: String(limit || pageLimit()), direction,
    };
    if (kind.api === 'prom') params.format = 'streams';
    const path = kind.api === 'loki' ? 'loki/api/v1/query_range' : 'api/v1/query_range';
    return call(path, params, 'POST');
  }

  /** Lines of a streams or Lethe answer, newest first. */
  function linesOf(data) {
    const out = [];
    if (data.resultType === 'streams') {
      for (const s of data.result) {
        const labels = s.stream || {};
        for (const [ts, line] of s.values || []) out.push({ ns: BigInt(ts), line, labels });
      }
    } else if (data.resultType === 'logs') {
      for (const l of data.result) {
        const { time, log, ...labels } = l;
        const frac = /\.(\d+)/.exec(time);
        const whole = BigInt(Date.parse(time.replace(/\.\d+/, ''))) * NS_PER_MS;
        const sub = frac ? BigInt(frac[1].slice(0, 9).padEnd(9, '0')) : 0n;
        out.push({ ns: whole + sub, line: log, labels });
      }
    }
    out.sort((a, b) => (a.ns === b.ns ? 0 : a.ns > b.ns ? -1 : 1));
    return out;
  }

  const keyOf = (l) => `${l.ns}\u0000${JSON.stringify(l.labels)}\u0000${l.line}`;

  /** Adds lines not held yet; returns how many were new. */
  function take(lines, where) {
    const fresh = [];
    for (const l of lines) {
      const k = keyOf(l);
      if (state.seen.has(k)) continue;
      state.seen.add(k);
      fresh.push(l);
    }
    if (where === 'front') state.lines = fresh.concat(state.lines);
    else state.lines = state.lines.concat(fresh);
    if (state.lines.length > MAX_HELD) {
      for (const l of state.lines.splice(MAX_HELD)) state.seen.delete(keyOf(l));
      state.exhausted = false;
    }
    return fresh.length;
  }

  async function runLines(gen, expr, kind, win) {
    const startNs = BigInt(Math.floor(win.startMs)) * NS_PER_MS;
    const endNs = BigInt(Math.floor(win.endMs)) * NS_PER_MS;
    const volume = drawVolume(gen, expr, kind, win).catch((e) => {
      el.volume.dataset.error = e.message;
    });
    const answer = await fetchLines(kind, expr, startNs, endNs, 'backward');
    if (gen !== state.gen) return '';
    if (answer.data.resultType === 'matrix') {
      show(el.graphView);
      drawGraph(answer.data.result, win.startMs / 1000, win.endMs / 1000, stepSeconds(win.rangeS));
      return `${answer.data.result.length} series`;
    }
    const note = showLines(gen, expr, kind, win, answer, startNs);
    await volume;
    return note;
  }

  function showLines(gen, expr, kind, win, answer, startNs) {
    state.lines = [];
    state.seen = new Set();
    state.selected = -1;
    state.window = { startNs: startNs === null ? BigInt(Math.floor(win.startMs)) * NS_PER_MS : startNs };
    state.highlight = highlighter(expr);
    const lines = linesOf(answer.data);
    take(lines, 'back');
    state.exhausted = lines.length < pageLimit();
    show(el.logsView);
    el.logDetail.hidden = true;
    el.logList.scrollTop = 0;
    paintAll();
    if (state.firstResultMs === null) {
      state.firstResultMs = Math.round(performance.now());
      document.body.dataset.firstResultMs = String(state.firstResultMs);
    }
    return `${state.lines.length} lines, newest first${warningsNote(answer, true)}`;
  }

  async function older() {
    if (!state.query || state.lines.length === 0) return;
    const gen = state.gen;
    const { expr, kind } = state.query;
    // The page ends at the oldest held instant, which the APIs may or may not include: the
    // lines held at that instant are asked for again on top of a page, and dropped as seen.
    const oldest = state.lines[state.lines.length - 1].ns;
    let atOldest = 0;
    for (let i = state.lines.length - 1; i >= 0 && state.lines[i].ns === oldest; i--) atOldest++;
    const asked = Math.min(100000, pageLimit() + atOldest);
    el.more.disabled = true;
    setState('running');
    try {
      const answer = await fetchLines(kind, expr, state.window.startNs, oldest, 'backward', asked);
      if (gen !== state.gen) return;
      const got = linesOf(answer.data);
      take(got.filter((l) => !state.seen.has(keyOf(l))).slice(0, pageLimit()), 'back');
      state.exhausted = got.length < asked;
      paintAll();
      el.info.textContent = `${state.lines.length} lines, newest first`;
      setState('done');
    } catch (e) {
      if (gen === state.gen) { showError(e, expr); setState('error'); }
    } finally {
      el.more.disabled = false;
    }
  }

  function startLive() {
    stopLive();
    const gen = state.gen;
    let ticks = 0;
    const tick = async () => {
      if (gen !== state.gen || !el.live.checked) return;
      if (!document.hidden && state.query) {
        const { expr, kind } = state.query;
        const from = state.lines.length ? state.lines[0].ns : state.window.startNs;
        const now = BigInt(Date.now()) * NS_PER_MS;
        try {
          const answer = await fetchLines(kind, expr, from, now, 'backward');
          if (gen !== state.gen) return;
          const added = take(linesOf(answer.data), 'front');
          if (added > 0 && ++ticks % 5 === 0) {
            // The histogram slides with the tail, every fifth poll that brought lines.
            const rangeS = parseDuration(el.range.value || '1h');
            const endMs = Date.now();
            drawVolume(gen, expr, kind, { startMs: endMs - rangeS * 1000, endMs, rangeS }).catch(() => {});
          }
          if (added > 0) {
            if (state.selected >= 0) state.selected += added;
            // Keep what the reader is looking at in place unless they are at the top.
            if (el.logList.scrollTop > 0) el.logList.scrollTop += added * ROW;
            paintAll();
            el.info.textContent = `${state.lines.length} lines, newest first · live`;
          }
        } catch (e) {
          if (e.name !== 'AbortError') el.info.textContent = `live: ${e.message}`;
        }
      }
      if (gen === state.gen && el.live.checked) state.liveTimer = setTimeout(tick, LIVE_EVERY_MS);
    };
    state.liveTimer = setTimeout(tick, LIVE_EVERY_MS);
  }

  function stopLive() {
    if (state.liveTimer) clearTimeout(state.liveTimer);
    state.liveTimer = null;
  }

  // ---- Highlighting the filter terms ---------------------------------------------------

  function unquote(q) {
    if (q.startsWith('`')) return q.slice(1, -1);
    try { return JSON.parse(q.startsWith("'") ? `"${q.slice(1, -1).replace(/"/g, '\\"')}"` : q); } catch (_) { return null; }
  }

  /** A RegExp matching what the expression's line filters (`|= "x"`, `|~ "re"`) look for, or null. */
  function highlighter(expr) {
    const parts = [];
    let insensitive = false;
    const re = /(\|=|\|~)\s*("(?:[^"\\]|\\.)*"|`[^`]*`)/g;
    let m;
    while ((m = re.exec(expr)) !== null) {
      const term = unquote(m[2]);
      if (!term) continue;
      if (m[1] === '|=') { parts.push(term.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')); continue; }
      let source = term;
      if (source.startsWith('(?i)')) { insensitive = true; source = source.slice(4); }
      try { new RegExp(source); parts.push(`(?:${source})`); } catch (_) { /* RE2-only syntax: not marked */ }
    }
    if (!parts.length) return null;
    try { return new RegExp(parts.join('|'), insensitive ? 'gi' : 'g'); } catch (_) { return null; }
  }

  function escapeHtml(s) {
    return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  }

  function marked(line) {
    const re = state.highlight;
    if (!re) return escapeHtml(line);
    let out = '';
    let at = 0;
    re.lastIndex = 0;
    for (const m of line.matchAll(re)) {
      if (m[0] === '') continue;
      out += `${escapeHtml(line.slice(at, m.index))}<mark>${escapeHtml(m[0])}</mark>`;
      at = m.index + m[0].length;
    }
    return out + escapeHtml(line.slice(at));
  }

  function streamText(labels) {
    if ('namespace' in labels && 'pod' in labels) {
      return [labels.namespace, labels.pod, labels.container].filter((x) => x !== undefined).join('/');
    }
    if ('node' in labels && 'process' in labels) return `${labels.node}/${labels.process}`;
    return Object.keys(labels).sort().map((k) => `${k}=${labels[k]}`).join(' ');
  }

  // ---- The virtual list ----------------------------------------------------------------

  let painting = false;

  function paintAll() {
    el.logSpacer.style.height = `${state.lines.length * ROW}px`;
    el.more.hidden = state.exhausted;
    el.logCount.textContent = `${state.lines.length} ${state.lines.length === 1 ? 'line' : 'lines'}${state.exhausted ? '' : ', more before'}`;
    el.logList.dataset.lines = String(state.lines.length);
    paintRows();
  }

  /** Only the rows in view (and a few around them) exist in the document. */
  function paintRows() {
    painting = false;
    const n = state.lines.length;
    const top = el.logList.scrollTop;
    const height = el.logList.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(n, Math.ceil((top + height) / ROW) + OVERSCAN);
    const rows = [];
    for (let i = first; i < last; i++) {
      const l = state.lines[i];
      const row = document.createElement('div');
      row.className = i === state.selected ? 'log-row selected' : 'log-row';
      row.setAttribute('role', 'listitem');
      row.style.top = `${i * ROW}px`;
      row.dataset.i = String(i);
      row.innerHTML = `<span class="t">${showTime(l.ns)}</span> <span class="s">${escapeHtml(streamText(l.labels))}</span> ${marked(l.line)}`;
      rows.push(row);
    }
    el.logSpacer.replaceChildren(...rows);
  }

  function select(i) {
    if (i < 0 || i >= state.lines.length) return;
    state.selected = i;
    const l = state.lines[i];
    el.logDetail.hidden = false;
    el.logDetail.textContent = `${showTime(l.ns)} UTC  (${l.ns} ns)\n${JSON.stringify(l.labels)}\n\n${l.line}`;
    const top = i * ROW;
    if (top < el.logList.scrollTop) el.logList.scrollTop = top;
    else if (top + ROW > el.logList.scrollTop + el.logList.clientHeight) el.logList.scrollTop = top + ROW - el.logList.clientHeight;
    paintRows();
  }

  // ---- The log-volume histogram --------------------------------------------------------

  /** Lines per bucket: `sum(count_over_time(<expr> [bucket]))` over the window, by the API
   *  that answers the expression — the counts Loki's volume panels draw. */
  async function drawVolume(gen, expr, kind, win) {
    const bucket = Math.max(1, Math.ceil(win.rangeS / 60));
    const query = `sum(count_over_time(${expr} [${bucket}s]))`;
    const path = kind.api === 'loki' ? 'loki/api/v1/query_range' : 'api/v1/query_range';
    const startS = win.startMs / 1000 + bucket;
    const answer = await call(path, { query, start: seconds(startS * 1000), end: seconds(win.endMs), step: String(bucket) }, 'POST');
    if (gen !== state.gen || answer.data.resultType !== 'matrix') return;
    const n = Math.max(1, Math.floor((win.endMs / 1000 - startS) / bucket) + 1);
    const xs = new Array(n);
    const ys = new Array(n).fill(0);
    for (let i = 0; i < n; i++) xs[i] = startS + i * bucket;
    let total = 0;
    for (const s of answer.data.result) {
      for (const [t, v] of s.values || []) {
        const i = Math.round((t - startS) / bucket);
        if (i >= 0 && i < n) { ys[i] += Number(v); total += Number(v); }
      }
    }
    el.volume.dataset.total = String(total);
    delete el.volume.dataset.error;
    if (state.volumePlot) state.volumePlot.destroy();
    el.volume.replaceChildren();
    state.volumePlot = new uPlot({
      width: contentWidth(),
      height: 90,
      tzDate: (ts) => utc(ts),
      legend: { show: false },
      cursor: { y: false },
      scales: { x: { time: true } },
      axes: [{ ...axis(), size: 24 }, { ...axis(), size: 50, ticks: { show: false }, values: (u, vals) => vals.map(fmtValue) }],
      series: [{}, {
        label: 'lines', stroke: cssVar('--accent'), fill: `${cssVar('--accent')}88`,
        paths: uPlot.paths.bars({ size: [0.9, 40] }), points: { show: false },
      }],
    }, [xs, ys], el.volume);
  }

  // ---- Errors --------------------------------------------------------------------------

  /** Line and column an error names: `1:10: parse error: …` (Prometheus, LetheQL),
   *  `parse error at line 1, col 5` (Loki). */
  function positionOf(message) {
    let m = /(?:^|\s)(\d+):(\d+):\s*parse error/.exec(message) || /^(\d+):(\d+):/.exec(message);
    if (m) return { line: Number(m[1]), col: Number(m[2]) };
    m = /line (\d+), col(?:umn)? (\d+)/.exec(message);
    if (m) return { line: Number(m[1]), col: Number(m[2]) };
    return null;
  }

  function showError(e, expr) {
    el.error.replaceChildren();
    const text = document.createElement('span');
    text.className = 'message';
    text.textContent = e.message || String(e);
    el.error.append(text);
    const pos = e instanceof ApiError ? positionOf(e.message) : null;
    const lines = expr.split('\n');
    if (pos && pos.line >= 1 && pos.line <= lines.length) {
      const where = document.createElement('span');
      where.className = 'where';
      const caret = document.createElement('span');
      caret.className = 'caret';
      caret.textContent = '^';
      const col = Math.max(1, Math.min(pos.col, lines[pos.line - 1].length + 1));
      where.append(`${lines[pos.line - 1]}\n${' '.repeat(col - 1)}`, caret);
      where.dataset.line = String(pos.line);
      where.dataset.col = String(pos.col);
      el.error.append(where);
      // Put the cursor where the API points.
      let offset = col - 1;
      for (let i = 0; i < pos.line - 1; i++) offset += lines[i].length + 1;
      const lead = el.expr.value.length - el.expr.value.trimStart().length;
      el.expr.setSelectionRange(lead + offset, lead + offset);
    }
    el.error.hidden = false;
  }

  function hideError() { el.error.hidden = true; el.error.replaceChildren(); }

  // ---- Label browser -------------------------------------------------------------------

  async function openLabels() {
    const open = el.labelBrowser.hidden;
    el.labelBrowser.hidden = !open;
    el.labelsToggle.setAttribute('aria-expanded', String(open));
    if (!open) return;
    el.labelNames.replaceChildren();
    el.labelValues.replaceChildren();
    try {
      const kind = classify(el.expr.value, el.lang.value);
      const win = timeWindow();
      const path = kind.api === 'loki' ? 'loki/api/v1/labels' : 'api/v1/labels';
      const answer = await call(path, { start: seconds(win.startMs), end: seconds(win.endMs) }, 'GET');
      fillList(el.labelNames, answer.data || [], (name, button) => {
        for (const b of el.labelNames.querySelectorAll('button')) b.setAttribute('aria-pressed', 'false');
        button.setAttribute('aria-pressed', 'true');
        loadValues(kind, name, win);
      });
      el.labelBrowser.dataset.names = String((answer.data || []).length);
      el.labelFilter.focus();
    } catch (e) {
      showError(e, el.expr.value);
    }
  }

  async function loadValues(kind, name, win) {
    el.labelValues.replaceChildren();
    delete el.labelBrowser.dataset.values;
    const base = kind.api === 'loki' ? 'loki/api/v1/label/' : 'api/v1/label/';
    try {
      const answer = await call(`${base}${encodeURIComponent(name)}/values`, { start: seconds(win.startMs), end: seconds(win.endMs) }, 'GET');
      const values = answer.data || [];
      fillList(el.labelValues, values, (value) => addMatcher(name, value));
      el.labelBrowser.dataset.values = values.join('\n');
    } catch (e) {
      showError(e, el.expr.value);
    }
  }

  function fillList(list, items, onPick) {
    const filter = el.labelFilter.value.toLowerCase();
    list.replaceChildren(...items.map((item) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = item;
      b.addEventListener('click', () => onPick(item, b));
      li.append(b);
      li.hidden = filter !== '' && !item.toLowerCase().includes(filter);
      return li;
    }));
  }

  /** Index of the first `{` outside strings and its closing `}`, or null. */
  function firstSelector(s) {
    let open = -1;
    for (let i = 0; i < s.length; i++) {
      const c = s[i];
      if (c === '"' || c === "'" || c === '`') {
        const close = c;
        for (i++; i < s.length && s[i] !== close; i++) if (s[i] === '\\' && close !== '`') i++;
      } else if (c === '{' && open < 0) open = i;
      else if (c === '}' && open >= 0) return [open, i];
    }
    return null;
  }

  function addMatcher(name, value) {
    const matcher = `${name}=${JSON.stringify(value)}`;
    const s = el.expr.value;
    const sel = firstSelector(s);
    if (sel) {
      const inner = s.slice(sel[0] + 1, sel[1]).trim();
      el.expr.value = `${s.slice(0, sel[0] + 1)}${inner}${inner ? ', ' : ''}${matcher}${s.slice(sel[1])}`;
    } else if (name === '__name__') {
      el.expr.value = value + s.trim();
    } else {
      el.expr.value = `${s.trim()}{${matcher}}`;
    }
    grow();
    el.expr.focus();
  }

  // ---- History and the URL -------------------------------------------------------------

  function recent() {
    try { return JSON.parse(localStorage.getItem(HISTORY_KEY) || '[]').filter((x) => typeof x === 'string'); } catch (_) { return []; }
  }

  function addToHistory(expr) {
    const list = [expr, ...recent().filter((x) => x !== expr)].slice(0, 50);
    try { localStorage.setItem(HISTORY_KEY, JSON.stringify(list)); } catch (_) { /* storage off: no history */ }
    fillHistory();
  }

  function fillHistory() {
    const options = recent().map((x) => {
      const o = document.createElement('option');
      o.value = x;
      o.textContent = x.length > 80 ? `${x.slice(0, 77)}…` : x;
      return o;
    });
    const first = document.createElement('option');
    first.value = '';
    first.textContent = 'History';
    el.history.replaceChildren(first, ...options);
  }

  function readUrl() {
    const p = new URLSearchParams(location.search);
    el.expr.value = p.get('g0.expr') || '';
    state.tab = p.get('g0.tab') === '1' ? 1 : 0;
    if (p.has('g0.range_input')) el.range.value = p.get('g0.range_input');
    // Prometheus 3 names the table's instant `moment_input`, the graph's end `end_input`.
    const end = state.tab === 1 && p.get('g0.moment_input') ? p.get('g0.moment_input') : p.get('g0.end_input');
    if (end) el.end.value = end;
    if (p.has('g0.step_input')) el.step.value = p.get('g0.step_input');
    el.stacked.checked = p.get('g0.stacked') === '1';
    if (['auto', 'promql', 'logql'].includes(p.get('g0.lang'))) el.lang.value = p.get('g0.lang');
    if (p.has('g0.limit')) el.limit.value = p.get('g0.limit');
    el.live.checked = p.get('g0.live') === '1';
    showTab();
  }

  function writeUrl() {
    const p = new URLSearchParams();
    p.set('g0.expr', el.expr.value.trim());
    p.set('g0.tab', String(state.tab));
    p.set('g0.range_input', el.range.value.trim() || '1h');
    if (el.end.value.trim()) p.set('g0.end_input', el.end.value.trim());
    if (el.step.value.trim()) p.set('g0.step_input', el.step.value.trim());
    if (el.stacked.checked) p.set('g0.stacked', '1');
    if (el.lang.value !== 'auto') p.set('g0.lang', el.lang.value);
    if (el.limit.value.trim() && el.limit.value.trim() !== '1000') p.set('g0.limit', el.limit.value.trim());
    if (el.live.checked) p.set('g0.live', '1');
    history.replaceState(null, '', `?${p}`);
  }

  function showTab() {
    el.tabGraph.setAttribute('aria-selected', String(state.tab === 0));
    el.tabTable.setAttribute('aria-selected', String(state.tab === 1));
    el.tabGraph.tabIndex = state.tab === 0 ? 0 : -1;
    el.tabTable.tabIndex = state.tab === 1 ? 0 : -1;
  }

  function grow() {
    el.expr.rows = Math.min(10, Math.max(1, el.expr.value.split('\n').length));
  }

  // ---- Wiring --------------------------------------------------------------------------

  el.form.addEventListener('submit', (e) => { e.preventDefault(); run(true); });
  el.expr.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); run(true); }
  });
  el.expr.addEventListener('input', grow);
  for (const [tab, button] of [[0, el.tabGraph], [1, el.tabTable]]) {
    button.addEventListener('click', () => { state.tab = tab; showTab(); run(false); });
    button.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
        state.tab = 1 - state.tab;
        showTab();
        (state.tab === 0 ? el.tabGraph : el.tabTable).focus();
        run(false);
      }
    });
  }
  el.stacked.addEventListener('change', () => { writeUrl(); if (state.lastDraw && !el.graphView.hidden) state.lastDraw(); });
  el.live.addEventListener('change', () => {
    if (!el.live.checked) { stopLive(); writeUrl(); return; }
    // Following the tail means a window that ends now.
    if (el.end.value.trim() !== '' && el.end.value.trim() !== 'now') {
      el.end.value = '';
      if (state.query) { run(false); return; }
    }
    writeUrl();
    if (state.query && state.query.kind.lines && document.body.dataset.state === 'done') startLive();
  });
  el.labelsToggle.addEventListener('click', openLabels);
  el.labelFilter.addEventListener('input', () => {
    const f = el.labelFilter.value.toLowerCase();
    for (const li of el.labelBrowser.querySelectorAll('li')) li.hidden = f !== '' && !li.textContent.toLowerCase().includes(f);
  });
  el.history.addEventListener('change', () => {
    if (!el.history.value) return;
    el.expr.value = el.history.value;
    el.history.value = '';
    grow();
    run(true);
  });
  el.more.addEventListener('click', older);
  el.logList.addEventListener('scroll', () => {
    if (!painting) { painting = true; requestAnimationFrame(paintRows); }
  });
  el.logList.addEventListener('click', (e) => {
    const row = e.target.closest('.log-row');
    if (row) select(Number(row.dataset.i));
  });
  el.logList.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowDown' || e.key === 'j') { e.preventDefault(); select(Math.min(state.lines.length - 1, state.selected + 1)); }
    else if (e.key === 'ArrowUp' || e.key === 'k') { e.preventDefault(); select(Math.max(0, state.selected - 1)); }
  });
  document.addEventListener('keydown', (e) => {
    const typing = ['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement.tagName);
    if (e.key === '/' && !typing) { e.preventDefault(); el.expr.focus(); }
    else if (e.key === 'Escape' && !el.labelBrowser.hidden) { openLabels(); el.labelsToggle.focus(); }
  });
  const redraw = () => {
    if (state.lastDraw && !el.graphView.hidden) state.lastDraw();
    if (state.volumePlot) state.volumePlot.setSize({ width: contentWidth(), height: 90 });
    if (!el.logsView.hidden) paintRows();
  };
  let resizeTimer = null;
  window.addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(redraw, 150); });
  window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => { if (state.query) run(false); });

  fillHistory();
  readUrl();
  grow();
  if (el.expr.value.trim()) run(true);
  else el.expr.focus();
})();
