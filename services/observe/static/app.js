// Polyedge dashboard: one WebSocket (/ws/live, latest state ~5 Hz), REST for controls and config.
// No build step: plain browser JS over the vendored uPlot.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "polyedge.apiToken";
const MARKET_KEY = "polyedge.market";  // the market shown in detail (series key, "eth-15m")
const MAX_POINTS = 4000;
const THRESH = { warning: 200, critical: 500, stale: 1000 };
const SIGNAL_STALE_MS = 3000;
const SPOT_STALE_MS = 3000;  // Binance trades several a second per asset  // signal scores several times a second: 3 s without one is stale

let token = localStorage.getItem(TOKEN_KEY) || "";
let state = null;
let lastMsgAt = 0;
let ws = null;
let attempt = 0;
let authFailed = false;
let selected = localStorage.getItem(MARKET_KEY) || "";  // "" = the server's default market
let shown = null;  // the detail on screen: { key, row, market, books, signal, position }
let chartKey = null;  // the market the charts hold

// the selected market's key (the server's default until one is clicked, or when the clicked
// one is gone) and its detail view: the live document's `details`, or the single-market fields
function detailOf(d) {
  const keys = (d.markets || []).map((m) => m.market);
  const k = keys.includes(selected) ? selected : (d.default_market || keys[0] || "");
  const row = (d.markets || []).find((m) => m.market === k) || null;
  const det = (d.details || {})[k] || { market: d.market, books: d.books, signal: d.signal, position: d.position };
  return { key: k, row, ...det };
}

function selectMarket(k) {
  selected = k;
  localStorage.setItem(MARKET_KEY, k);
  if (state) render(state);
}

// ---------- formatting ----------
const fmt = (v, d = 2) => (v === null || v === undefined || Number.isNaN(v) ? "—" : Number(v).toFixed(d));
const usd = (v, d = 2) => (v === null || v === undefined ? "—" : (v < 0 ? "-$" : "$") + Math.abs(v).toFixed(d));
const signed = (v, d = 2) => (v === null || v === undefined ? "—" : (v >= 0 ? "+" : "") + Number(v).toFixed(d));
const pct = (v, d = 1) => (v === null || v === undefined ? "—" : (v * 100).toFixed(d) + "%");
const btcFmt = (v) => (v === null || v === undefined ? "—" : v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }));
const ageFmt = (ms) => (ms === null || ms === undefined ? "—" : ms < 1000 ? `${Math.round(ms)} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60000)} m`);
const sevOf = (ms, th = THRESH) => (ms === null || ms === undefined ? "none" : ms > th.stale ? "stale" : ms > th.critical ? "critical" : ms > th.warning ? "warning" : "ok");
const hhmmss = (ns) => new Date(ns / 1e6).toISOString().slice(11, 19);
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
function setCls(el, base, extra) { el.className = base + (extra ? " " + extra : ""); }

// ---------- charts (uPlot) ----------
const btcData = [[], []];
const probData = [[], [], []];
let btcChart = null;
let probChart = null;

function axisStyle() {
  return { stroke: "#7d8aa0", grid: { stroke: "#1f2737", width: 1 }, ticks: { stroke: "#263043" } };
}

function drawOverlays(u) {
  const m = shown && shown.market;
  if (!m) return;
  const ctx = u.ctx;
  const { left, top, width, height } = u.bbox;
  ctx.save();
  ctx.beginPath(); ctx.rect(left, top, width, height); ctx.clip();
  if (m.price_to_beat) {
    const y = u.valToPos(m.price_to_beat, "y", true);
    ctx.strokeStyle = "#f59e0b"; ctx.lineWidth = 1.5 * devicePixelRatio; ctx.setLineDash([8, 5]);
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + width, y); ctx.stroke();
    ctx.setLineDash([]); ctx.fillStyle = "#f59e0b"; ctx.font = `${11 * devicePixelRatio}px monospace`;
    ctx.textAlign = "left"; ctx.textBaseline = "bottom";  // uPlot leaves its axis alignment set
    ctx.fillText("to beat " + btcFmt(m.price_to_beat), left + 6, y - 4);
  }
  ctx.strokeStyle = "#64748b"; ctx.lineWidth = devicePixelRatio; ctx.setLineDash([2, 4]);
  for (const tNs of [m.window_start_ns, m.window_end_ns]) {
    if (!tNs) continue;
    const x = u.valToPos(tNs / 1e9, "x", true);
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
  }
  ctx.restore();
}

// with no data (and no market to frame) an empty time axis would start at 0 = 1 Jan 1970; show
// the five minutes around now instead, so the labels are times of today
function timeRange(min, max) {
  if (min === null || min === undefined || max === null || max === undefined) {
    const now = Date.now() / 1000;
    return [now - 150, now + 150];
  }
  return min === max ? [min - 30, max + 30] : [min, max];
}

function makeCharts() {
  const btcEl = $("chart-btc");
  btcChart = new uPlot({
    width: btcEl.clientWidth, height: btcEl.clientHeight,
    legend: { show: false }, cursor: { drag: { x: false, y: false } },
    scales: {
      x: {
        time: true,
        // show the current window whole (and half of the one before) so the empty space to
        // the right is the time left to trade
        range: (u, min, max) => {
          const m = shown && shown.market;
          if (!m || !m.window_end_ns) return timeRange(min, max);
          const start = m.window_start_ns / 1e9, end = m.window_end_ns / 1e9;
          const lo = start - (end - start) / 2;
          return [lo, Math.max(end, max ?? end)];
        },
      },
      y: {
        range: (u, min, max) => {
          const ptb = shown && shown.market && shown.market.price_to_beat;
          if (ptb) { min = Math.min(min ?? ptb, ptb); max = Math.max(max ?? ptb, ptb); }
          if (min === null || max === null) return [0, 1];
          // at least 0.005 % of the price either side: 5 USD of BTC, 0.0001 USD of XRP
          const pad = Math.max((max - min) * 0.1, Math.abs(max) * 5e-5);
          return [min - pad, max + pad];
        },
      },
    },
    axes: [axisStyle(), { ...axisStyle(), size: 70 }],
    series: [{}, { label: "BTC", stroke: "#38bdf8", width: 1.6, points: { show: false } }],
    hooks: { draw: [drawOverlays] },
  }, btcData, btcEl);
  const probEl = $("chart-prob");
  probChart = new uPlot({
    width: probEl.clientWidth, height: probEl.clientHeight,
    legend: { show: false }, cursor: { show: false },
    scales: { x: { time: true, range: (u, min, max) => timeRange(min, max) }, y: { range: [0, 1] } },
    axes: [{ ...axisStyle(), size: 24 }, { ...axisStyle(), size: 34, splits: () => [0, 0.25, 0.5, 0.75, 1] }],
    series: [{}, { label: "model", stroke: "#22c55e", width: 1.6, points: { show: false } },
      { label: "market", stroke: "#38bdf8", width: 1.2, dash: [4, 3], points: { show: false } }],
  }, probData, probEl);
  window.addEventListener("resize", () => {
    btcChart.setSize({ width: btcEl.clientWidth, height: btcEl.clientHeight });
    probChart.setSize({ width: probEl.clientWidth, height: probEl.clientHeight });
  });
}

function pushPoint(arrs, values) {
  const t = values[0];
  const xs = arrs[0];
  if (xs.length && t <= xs[xs.length - 1]) return;
  values.forEach((v, i) => arrs[i].push(v));
  if (xs.length > MAX_POINTS) arrs.forEach((a) => a.splice(0, a.length - MAX_POINTS));
}

async function loadHistory(key) {
  try {
    let r = await fetch("/api/history" + (key ? `?market=${encodeURIComponent(key)}` : ""));
    if (r.status === 404 && key) r = await fetch("/api/history");  // the stored choice is gone
    if (!r.ok) return;
    const h = await r.json();
    if (chartKey === null) chartKey = h.market;  // at start: the market the server answered for
    if (h.market && chartKey !== h.market) return;  // another market was selected meanwhile
    // merged under what live updates pushed meanwhile, in time order
    const spot = [...(h.spot || h.btc).map(([t, p]) => [t, p]), ...btcData[0].map((t, i) => [t, btcData[1][i]])].sort((a, b) => a[0] - b[0]);
    const prob = [...h.prob, ...probData[0].map((t, i) => [t, probData[1][i], probData[2][i]])].sort((a, b) => a[0] - b[0]);
    btcData.forEach((a) => a.splice(0)); probData.forEach((a) => a.splice(0));
    for (const v of spot) pushPoint(btcData, v);
    for (const v of prob) pushPoint(probData, v);
    if (btcChart) { btcChart.setData(btcData); probChart.setData(probData); }
  } catch (e) { /* live updates will fill the charts */ }
}

// the charts show one market: a new selection starts them afresh from its history
function chartsFor(key) {
  if (key === chartKey) return;
  chartKey = key;
  btcData.forEach((a) => a.splice(0)); probData.forEach((a) => a.splice(0));
  loadHistory(key);
}

// ---------- the overview: every market in one table, click a row to select it ----------
const clock = (left) => (left === null || left === undefined ? "--:--" : `${String(Math.floor(left / 60)).padStart(2, "0")}:${String(Math.floor(left % 60)).padStart(2, "0")}`);
const priceFmt = (v) => (v === null || v === undefined ? "—" : v >= 1000 ? btcFmt(v) : Number(v).toFixed(v >= 10 ? 2 : 4));
// with a position open, strategy and execution must both be alive (services/observe/health.py
// MANAGERS): the row of a market says so, as the "TRADING UNMANAGED" banner does
const MANAGERS = ["strategy", "execution"];
function managersDown(d) {
  const svc = d.services || {};
  return MANAGERS.filter((n) => svc[n] && svc[n].alive === false).map((n) => `${n} ${svc[n].supervisor_state || svc[n].state || "down"}`);
}
function marketState(m, down) {
  const rk = m.risk || {};
  const p = m.position || {};
  if (down.length && p.open) return ['<span class="halted">UNMANAGED</span>', `position open and ${down.join(", ")}: nothing manages its exit`];
  if (down.some((w) => w.startsWith("strategy"))) return ['<span class="halted">no strategy</span>', `${down.join(", ")}; last heard: ${rk.halted ? "halted" : "active"}`];
  if (rk.halted === null || rk.halted === undefined) return ['<span class="muted">?</span>', ""];
  return rk.halted ? ['<span class="halted">HALTED</span>', (rk.reasons || []).join(", ")] : ['<span class="pnl-pos">active</span>', ""];
}
function renderMarkets(d, key) {
  const rows = d.markets || [];
  const down = managersDown(d);
  $("markets-count").textContent = rows.length ? `${rows.length} market${rows.length === 1 ? "" : "s"}` : "";
  $("markets").innerHTML = rows.map((m) => {
    const p = m.position || {};
    const rk = m.risk || {};
    const left = m.seconds_left;
    const diff = m.spot !== null && m.price_to_beat ? m.spot - m.price_to_beat : null;
    const pos = p.open ? `<span class="${p.outcome === "Up" ? "pnl-pos" : "pnl-neg"}">${esc(p.outcome)}</span> ${fmt(p.size, 2)} @ ${fmt(p.avg_price, 3)}` : '<span class="muted">flat</span>';
    const u = p.open ? p.unrealized_pnl : null;
    const state = marketState(m, down);
    const dec = m.decision ? `${m.decision.action}${m.decision.reason ? ": " + m.decision.reason : ""}` : "";
    // a market whose own spot or signal stopped while the others flow: its figures are old
    const spotStale = m.spot_age_ms !== null && m.spot_age_ms !== undefined && m.spot_age_ms > SPOT_STALE_MS;
    const sigStale = m.signal_age_ms !== null && m.signal_age_ms !== undefined && m.signal_age_ms > SIGNAL_STALE_MS;
    return `<tr id="mkt-${esc(m.market)}" data-market="${esc(m.market)}" class="${m.market === key ? "selected" : ""}" title="${esc(m.slug || "no window yet")}${dec ? " · last decision " + esc(dec) : ""}">
      <td class="mono"><b>${esc(m.market)}</b>${m.configured ? "" : ' <span class="hint">(not configured)</span>'}</td>
      <td class="mono muted">${esc(m.slug || "—")}</td>
      <td class="r mono mkt-left ${left !== null && left <= 10 ? "closing" : left !== null && left <= 30 ? "soon" : ""}">${clock(left)}</td>
      <td class="r mono mkt-spot${spotStale ? " sev-warning" : ""}"${spotStale ? ` title="no ${esc(m.asset)} trade for ${ageFmt(m.spot_age_ms)}"` : ""}>${priceFmt(m.spot)}${spotStale ? " · stale" : ""}</td>
      <td class="r mono ${diff === null ? "muted" : diff >= 0 ? "pnl-pos" : "pnl-neg"}">${diff === null ? "—" : signed(diff, Math.abs(diff) >= 10 ? 1 : 4)}</td>
      <td class="r mono mkt-model${sigStale ? " sev-warning" : ""}"${sigStale ? ` title="signal ${ageFmt(m.signal_age_ms)} old"` : ""}>${pct(m.p_model, 1)}${sigStale ? " · stale" : ""}</td>
      <td class="r mono mkt-market">${pct(m.p_market, 1)}</td>
      <td class="${m.side ? (m.side === "Up" ? "pnl-pos" : "pnl-neg") : "muted"}">${m.side ? `${esc(m.side)} ${pct(m.edge_pct, 1)}` : "—"}</td>
      <td class="mono mkt-pos">${pos}</td>
      <td class="r mono ${u === null ? "muted" : u >= 0 ? "pnl-pos" : "pnl-neg"}">${u === null || u === undefined ? "—" : signed(u, 2)}</td>
      <td class="r mono mkt-pnl ${rk.daily_pnl > 0 ? "pnl-pos" : rk.daily_pnl < 0 ? "pnl-neg" : ""}">${usd(rk.daily_pnl)}</td>
      <td class="r mono mkt-trades">${rk.trades_today ?? "—"}</td>
      <td class="mkt-state" title="${esc(state[1])}">${state[0]}</td></tr>`;
  }).join("") || '<tr><td colspan="13" class="muted">no market yet</td></tr>';
}
$("markets").addEventListener("click", (ev) => {
  const tr = ev.target.closest("tr[data-market]");
  if (tr) selectMarket(tr.dataset.market);
});

// ---------- rendering ----------
function renderBook(el, ageEl, b) {
  if (!b) { el.innerHTML = '<div class="muted">no book</div>'; ageEl.textContent = ""; return; }
  ageEl.textContent = "age " + ageFmt(b.age_ms);
  const maxSz = Math.max(1, ...b.bids.map((l) => l[1]), ...b.asks.map((l) => l[1]));
  const rows = (lv) => lv.map(([p, s]) => `<div class="lvl"><i style="width:${(100 * s / maxSz).toFixed(1)}%"></i><span class="p">${fmt(p, 3)}</span><span>${fmt(s, 1)}</span></div>`).join("");
  el.innerHTML = `<div class="hdr"><span>bid <b class="mono pnl-pos">${fmt(b.best_bid, 3)}</b></span><span class="muted">spr ${fmt(b.spread, 3)}</span><span>ask <b class="mono pnl-neg">${fmt(b.best_ask, 3)}</b></span></div>
    <div class="ladder bids">${rows(b.bids) || '<div class="muted">empty</div>'}<div class="muted">depth ${fmt(b.bid_depth, 0)}</div></div>
    <div class="ladder asks">${rows(b.asks) || '<div class="muted">empty</div>'}<div class="muted">depth ${fmt(b.ask_depth, 0)}</div></div>`;
}

function render(d) {
  // mode banner
  // unknown must look unknown, never safe: no mode in the document is "—", not "DRY RUN"
  const label = (d.mode && d.mode.label) || null;
  const venue = d.mode && d.mode.venue ? ` · ${d.mode.venue} venue` : "";
  $("mode-banner").textContent = label ? label + venue : "—";
  $("mode-banner").title = label ? `from ${d.mode.source}` : "no mode in observe's document";
  setCls($("mode-banner"), "mode", label === "LIVE" ? "live" : label === "BLOCKED" ? "blocked" : label === "DRY RUN" ? "dry" : "unknown");
  $("clock").textContent = hhmmss(d.ts_ns) + " UTC";
  $("cfg-version").textContent = d.config_version;
  // strategy applied a new config (from here, another tab or the file): show it, unless the
  // trader is typing in the editor right now
  const cfgKey = `${d.config_version}|${d.config_source}`;
  if (cfgKey !== shownCfgVersion && !$("cfg-form").contains(document.activeElement)) {
    shownCfgVersion = cfgKey;
    loadConfig().catch(() => {});
  }

  // the overview of every market, and the selected one in detail below it
  const v = detailOf(d);
  shown = v;
  renderMarkets(d, v.key);
  chartsFor(v.key);
  const asset = (v.row && v.row.asset) || (v.key ? v.key.split("-")[0] : "btc");
  const spot = v.row ? v.row.spot : d.btc_price;
  const spotAge = v.row ? v.row.spot_age_ms : d.btc_age_ms;
  $("spot-label").textContent = `${asset.toUpperCase()} / USD`;
  $("chart-spot-title").textContent = `${asset.toUpperCase()} price · ${v.key}`;
  document.title = `Polyedge · ${v.key || "BTC 5m"}`;
  $("ctl-scope-selected").textContent = `${v.key} only`;

  // spot & market
  $("btc-price").textContent = priceFmt(spot);
  const m = v.market;
  const ptb = m && m.price_to_beat;
  $("ptb").textContent = priceFmt(ptb);
  $("ptb-src").textContent = m ? (m.price_to_beat_source || (ptb ? "" : "not published yet")) : "—";
  if (ptb && spot) {
    const diff = spot - ptb;
    $("btc-vs-ptb").textContent = `${signed(diff, Math.abs(diff) >= 10 ? 2 : 4)} vs to-beat → ${diff >= 0 ? "Up" : "Down"}`;
    setCls($("btc-vs-ptb"), "sub mono", diff >= 0 ? "pnl-pos" : "pnl-neg");
  } else { $("btc-vs-ptb").textContent = spotAge !== null && spotAge !== undefined ? "age " + ageFmt(spotAge) : "no trades yet"; }
  $("market-slug").textContent = m ? m.slug : (v.key ? `${v.key}: no window yet` : "no market yet");
  if (m) {
    const left = m.seconds_left;
    const mm = Math.floor(left / 60), ss = Math.floor(left % 60);
    $("countdown").textContent = `${String(mm).padStart(2, "0")}:${String(ss).padStart(2, "0")}`;
    setCls($("countdown"), "countdown mono", left <= 10 ? "closing" : left <= 30 ? "soon" : "");
    $("countdown-bar").style.width = `${Math.max(0, Math.min(100, 100 * (1 - left / m.window_seconds)))}%`;
  } else { $("countdown").textContent = "--:--"; }

  // risk
  const r = d.risk || {};
  const rs = $("risk-state");
  const strat = (d.services || {}).strategy;
  // markets halted on their own (a global halt says so itself); every configured market halted
  // is HALTED, not ACTIVE: nothing can enter (BREAKER3 findings 7 and 10)
  const configured = (d.markets || []).filter((m) => m.configured !== false);
  const haltedMkts = r.halted ? [] : configured.filter((m) => m.risk && m.risk.halted);
  const allHalted = haltedMkts.length > 0 && haltedMkts.length === configured.length;
  const haltedWhy = haltedMkts.map((m) => `${m.market}${m.risk.reasons && m.risk.reasons.length ? ` (${m.risk.reasons.join(", ")})` : ""}`);
  if (strat && strat.alive === false) {
    // the risk state is strategy's: with strategy down, the last one heard is not the truth
    rs.textContent = "NO STRATEGY"; setCls(rs, "state", "halted");
    $("risk-reasons").textContent = `strategy ${strat.supervisor_state || strat.state}; last heard: ${r.halted ? "halted" : "active"}`;
  } else {
    if (r.halted === null || r.halted === undefined) { rs.textContent = "UNKNOWN"; setCls(rs, "state", "unknown"); }
    else if (r.halted) { rs.textContent = r.emergency_stop ? "HALTED · E-STOP" : "HALTED"; setCls(rs, "state", "halted"); }
    else if (allHalted) { rs.textContent = "HALTED"; setCls(rs, "state", "halted"); }
    else { rs.textContent = "ACTIVE"; setCls(rs, "state", "active"); }
    $("risk-reasons").textContent = (r.reasons && r.reasons.length) ? r.reasons.join(", ") : haltedMkts.length ? `${allHalted ? "every market halted" : "halted"}: ${haltedWhy.join("; ")}` : (r.loss_streak ? `loss streak ${r.loss_streak}` : "no halt reasons");
  }

  // signal
  const s = v.signal;
  const up = v.books && v.books.up;
  $("sig-side").textContent = s ? s.side : "—";
  setCls($("sig-side"), "side", s ? s.side : "none");
  // the last score heard, with its age: a signal that stopped is marked stale, not shown as now
  const sigAge = s && s.ts_ns ? (d.ts_ns - s.ts_ns) / 1e6 : null;
  const sigStale = sigAge !== null && sigAge > SIGNAL_STALE_MS;
  $("sig-age").textContent = sigAge === null ? "" : sigStale ? `stale · ${ageFmt(sigAge)} old` : `age ${ageFmt(sigAge)}`;
  setCls($("sig-age"), "sub", sigStale ? "sev-warning" : "");
  $("sig-side").style.opacity = sigStale ? "0.45" : "";
  $("sig-score").textContent = s ? fmt(s.score, 3) : "—";
  $("sig-edge").textContent = s ? pct(s.edge_pct, 1) : "—";
  $("sig-pup").textContent = s ? pct(s.p_up, 1) : "—";
  $("sig-pup-bar").style.width = s ? `${100 * s.p_up}%` : "0";
  const mid = up ? up.mid : null;
  $("mkt-up").textContent = mid !== null ? pct(mid, 1) : "—";
  $("mkt-up-bar").style.width = mid !== null ? `${100 * mid}%` : "0";
  // running Brier of model vs market (and the blend strategy trades on) on resolved windows
  const sc = v.scores || d.scores;  // the selected market's resolved windows
  $("scores").textContent = sc && sc.n
    ? `Brier on ${sc.windows} resolved window${sc.windows === 1 ? "" : "s"} (${sc.n} s): model ${sc.brier_model.toFixed(4)} · market ${sc.brier_market.toFixed(4)} · blend ${sc.brier_blend.toFixed(4)} (lower is better)`
    : "Brier model vs market: no resolved window yet";
  $("scores").className = sc && sc.n && sc.brier_model > sc.brier_market ? "hint sev-warning" : "hint";

  // books
  renderBook($("book-up"), $("book-up-age"), v.books && v.books.up);
  renderBook($("book-down"), $("book-down-age"), v.books && v.books.down);

  // position
  const p = v.position || {};
  if (!v.position) { $("position").innerHTML = '<div class="muted">no data</div>'; }
  else if (!p.open) { $("position").innerHTML = '<div class="muted">flat — no open position</div>'; }
  else {
    const u = p.unrealized_pnl;
    $("position").innerHTML = `<div class="pos-grid mono">
      <span>outcome</span><b class="${p.outcome === "Up" ? "pnl-pos" : "pnl-neg"}">${esc(p.outcome)}</b>
      <span>size</span><b>${fmt(p.size, 2)} sh</b><span>avg</span><b>${fmt(p.avg_price, 3)}</b>
      <span>mark</span><b>${fmt(p.mark_price, 3)}</b>
      <span>live P&amp;L</span><b class="${u >= 0 ? "pnl-pos" : "pnl-neg"}" id="pos-pnl">${signed(u, 2)}</b></div>`;
  }
  // positions of ended windows wait for the market's resolution: capital at risk, not a block
  const rk = d.risk || {};
  const waiting = rk.awaiting_resolution || [];
  if (waiting.length) {
    $("position").insertAdjacentHTML("beforeend", `<div class="sev-warning" id="pos-awaiting">awaiting resolution: ${waiting.map(esc).join(", ")} · capital at risk ${usd(rk.capital_at_risk)}</div>`);
  }
  const mt = d.metrics || {};
  $("m-pnl").textContent = usd(mt.daily_pnl);
  setCls($("m-pnl"), "mono", mt.daily_pnl > 0 ? "pnl-pos" : mt.daily_pnl < 0 ? "pnl-neg" : "");
  $("m-trades").textContent = mt.trades_today ?? "—";
  $("m-winrate").textContent = mt.win_rate === null || mt.win_rate === undefined ? "—" : pct(mt.win_rate, 0);
  $("m-fees").textContent = usd(mt.fees_today, 3);
  $("m-rebates").textContent = usd(mt.rebates_today ?? 0, 3);
  // winning tokens pay nothing until redeemed: what came back vs what the wallet still waits for
  const rd = d.redemptions || {};
  $("m-redeemed").textContent = rd.redeemed_usd === undefined ? "—" : usd(rd.redeemed_usd);
  $("m-awaiting-redemption").textContent = rd.awaiting_redemption_usd === undefined ? "—"
    : `${usd(rd.awaiting_redemption_usd)}${rd.open ? ` (${rd.open})` : ""}`;
  setCls($("m-awaiting-redemption"), "mono", rd.open ? "sev-warning" : "");
  const stuck = (rd.recent || []).filter((r) => r.state === "awaiting" || r.state === "failed");
  $("m-awaiting-redemption").title = stuck.map((r) => `${r.slug}: ${r.state} ${r.detail || ""}`).join("\n");

  renderHealth(d);

  // latency: each stage coloured by its own bounds (the venue-lagged price feed has wider ones)
  $("latency").innerHTML = Object.entries(d.latency || {}).map(([k, v]) => {
    const th = v.thresholds || THRESH;
    const own = th.stale !== THRESH.stale ? ` <span class="hint">(&gt;${th.warning}/${th.critical}/${th.stale})</span>` : "";
    return `<tr title="warn > ${th.warning} ms · crit > ${th.critical} ms · stale > ${th.stale} ms"><td>${esc(k.replace(/_ms$/, ""))}${own}</td><td class="r mono sev-${sevOf(v.p50, th)}">${fmt(v.p50, 1)}</td><td class="r mono sev-${sevOf(v.p99, th)}">${fmt(v.p99, 1)}</td><td class="r mono muted">${v.count}</td></tr>`;
  }).join("");

  // activity
  const acts = [
    ...(d.fills || []).map((f) => ({ t: f.ts_fill_ns, what: "fill", side: `${f.side} ${f.outcome || ""}`, price: fmt(f.price, 3), size: fmt(f.size, 2), detail: `fee ${fmt(f.fee, 4)}${f.dry_run ? " · dry" : ""}` })),
    ...(d.decisions || []).map((x) => ({ t: x.ts_ns, what: x.action, side: x.side || "", price: "", size: "", detail: `${x.market ? x.market + " · " : ""}${x.reason}` })),
  ].sort((a, b) => b.t - a.t).slice(0, 10);
  $("activity").innerHTML = acts.map((a) => `<tr><td class="mono">${a.t ? hhmmss(a.t) : "—"}</td><td>${esc(a.what)}</td><td>${esc(a.side)}</td><td class="r mono">${a.price}</td><td class="r mono">${a.size}</td><td class="muted">${esc(a.detail)}</td></tr>`).join("") || '<tr><td colspan="6" class="muted">nothing yet</td></tr>';

  // charts
  const t = d.ts_ns / 1e9;
  if (spot !== null && spot !== undefined) pushPoint(btcData, [t, spot]);
  if (s) pushPoint(probData, [t, s.p_up, mid]);
  if (btcChart) { btcChart.setData(btcData); probChart.setData(probData); }
}

// ---------- health: services, feeds, banners, config file errors ----------
let dataFlow = { ok: true, reason: "" };

function renderHealth(d) {
  const h = d.health || { ok: true, problems: [], warnings: [], unmanaged: null };
  // red banner: a position is open and nothing can manage it (strategy or execution down)
  const um = $("unmanaged-banner");
  um.classList.toggle("hidden", !h.unmanaged);
  if (h.unmanaged) um.textContent = "TRADING UNMANAGED — " + h.unmanaged;
  // the other problems (and warnings) in a strip under it, each with its reason
  const hb = $("health-banner");
  const items = [...(h.problems || []), ...(h.warnings || [])];
  // one className write: a toggle of "hidden" before setCls would be overwritten by it (the
  // strip stayed up, empty, after health came back)
  setCls(hb, "health-banner", [(h.problems || []).length ? "bad" : "", items.length ? "" : "hidden"].filter(Boolean).join(" "));
  hb.innerHTML = items.length ? `<b>${h.ok ? "Warnings" : "Not healthy"}</b><ul>${items.map((x) => `<li>${esc(x)}</li>`).join("")}</ul>` : "";
  dataFlow = d.data_flow || { ok: true, reason: "" };

  // services: anything not running is red with supervisord's state and the reason
  $("services").innerHTML = Object.entries(d.services || {}).map(([n, v]) => {
    const shown = v.supervisor_state && v.supervisor_state !== "RUNNING" ? v.supervisor_state : v.state;
    const cls = !v.alive ? "bad" : v.state === "halted" ? "halted" : v.state === "running" ? "ok" : v.state === "degraded" ? "halted" : "bad";
    const title = [v.reason, `heartbeat ${ageFmt(v.age_ms)}`].filter(Boolean).join(" · ");
    return `<span class="chip ${cls}" id="svc-${esc(n)}" title="${esc(title)}">${esc(n)} · ${esc(shown)}</span>`;
  }).join("");

  // feeds: state, age of the last message, lag (coloured by the same bounds as the latency
  // table), and why a feed is down
  $("feeds").innerHTML = Object.entries(d.feeds || {}).map(([n, f]) => {
    const st = f.disabled ? ["off", "sev-none"] : f.unknown ? ["unknown", "sev-none"] : f.connected === false ? ["down", "sev-critical"] : f.stale ? ["stale", "sev-warning"] : f.age_ms === null ? ["no data", "sev-none"] : ["ok", "sev-ok"];
    const lagCls = f.lag_ms === null || f.lag_ms === undefined ? "muted" : `sev-${sevOf(f.lag_ms, f.lag_thresholds || THRESH)}`;
    const why = f.unknown ? `<tr><td></td><td colspan="4" class="feed-reason">${esc(f.reason)}</td></tr>` : (f.connected === false || f.stale) && f.detail ? `<tr><td></td><td colspan="4" class="feed-reason">${esc(f.detail)}</td></tr>` : "";
    return `<tr id="feed-${esc(n)}"><td>${esc(n)}</td><td class="${st[1]}">${st[0]}</td><td class="r mono">${ageFmt(f.age_ms)}</td><td class="r mono ${lagCls}">${ageFmt(f.lag_ms)}</td><td class="r mono">${f.reconnects ?? "—"}</td></tr>${why}`;
  }).join("");

  // Binance - Chainlink basis (time-aligned, ingest's meter) and Chainlink's delivery lag
  const b = d.basis;
  $("basis").textContent = b
    ? `basis Binance − Chainlink ${b.basis_mean_usd >= 0 ? "+" : ""}${b.basis_mean_usd.toFixed(1)} USD (sd ${b.basis_sd_usd.toFixed(1)}, last ${b.basis_usd.toFixed(1)})${b.warn ? ` beyond ±${b.bound_usd}` : ""} · Chainlink lag ${(b.lag_mean_ms / 1000).toFixed(2)} s`
    : "basis: no Chainlink ticks yet";
  $("basis").className = b && b.warn ? "sev-warning" : "hint";

  // a config file a service refused (it keeps running on its last good config)
  const ce = d.config_errors || [];
  $("cfg-file-error").classList.toggle("hidden", ce.length === 0);
  $("cfg-file-error").textContent = ce.map((e) => `${e.service} refused ${e.path}: ${e.error}`).join("\n");
}

// ---------- WebSocket with reconnect ----------
function setConn(up, text, title = "") {
  $("conn-status").textContent = (up ? "● " : "○ ") + text;
  $("conn-status").title = title;
  setCls($("conn-status"), "conn", up === "warn" ? "warn" : up ? "up" : "down");
  $("conn-banner").classList.toggle("hidden", up);
  // no state from observe (socket down, or silent): what is on screen is old, greyed until new
  document.body.classList.toggle("stale", !up);
  if (!up) $("conn-banner").textContent = text;
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const q = token ? `?token=${encodeURIComponent(token)}` : "";
  ws = new WebSocket(`${proto}://${location.host}/ws/live${q}`);
  ws.onopen = () => { attempt = 0; authFailed = false; setConn(true, "connected"); };
  ws.onmessage = (ev) => {
    lastMsgAt = Date.now();
    const msg = JSON.parse(ev.data);
    if (msg.type === "state") { state = msg.data; render(state); showFlow(); maybeReloadTrades(state); }
  };
  ws.onclose = (ev) => {
    ws = null;
    if (ev.code === 4401) {
      authFailed = true;
      setConn(false, "API token required or wrong — click “API token”");
      return;
    }
    attempt += 1;
    const delay = Math.min(5000, 300 * 2 ** Math.min(attempt, 5));
    setConn(false, `Disconnected from observe — reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${attempt})`);
    setTimeout(connect, delay);
  };
}

// no frame for 2 s on an open socket: the data on screen is old, say so
setInterval(() => {
  if (ws && ws.readyState === WebSocket.OPEN && lastMsgAt && Date.now() - lastMsgAt > 2000) {
    setConn(false, `No update for ${((Date.now() - lastMsgAt) / 1000).toFixed(0)} s — data on screen is stale`);
  } else if (ws && ws.readyState === WebSocket.OPEN) { showFlow(); }
}, 500);

// "live" means market data is flowing, not only that this page's WebSocket is open
function showFlow() {
  if (dataFlow.ok) setConn(true, "live");
  else setConn("warn", "connected · no market data", dataFlow.reason || "");
}

// ---------- modal (confirmations and token) ----------
function modal({ title, text, confirm = "Confirm", danger = true, input = false }) {
  return new Promise((resolve) => {
    $("modal-title").textContent = title;
    $("modal-text").textContent = text;
    $("confirm-yes").textContent = confirm;
    $("confirm-yes").className = danger ? "danger" : "ok";
    $("modal-input").classList.toggle("hidden", !input);
    $("modal-input").value = input ? token : "";
    $("modal").classList.remove("hidden");
    if (input) $("modal-input").focus();
    const done = (ok) => {
      $("modal").classList.add("hidden");
      $("confirm-yes").onclick = $("confirm-no").onclick = $("modal-input").onkeydown = null;
      resolve(ok ? (input ? $("modal-input").value : true) : null);
    };
    $("confirm-yes").onclick = () => done(true);
    $("confirm-no").onclick = () => done(false);
    // Enter in the token field saves it, Escape cancels (as the buttons do)
    $("modal-input").onkeydown = (ev) => {
      if (ev.key === "Enter") { ev.preventDefault(); done(true); }
      else if (ev.key === "Escape") { ev.preventDefault(); done(false); }
    };
  });
}

async function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body ?? {}) });
  let doc = null;
  try { doc = await r.json(); } catch (e) { doc = { error: `HTTP ${r.status}` }; }
  return { status: r.status, doc };
}

function say(el, ok, text) { el.textContent = text; setCls(el, "control-msg", ok ? "okm" : "err"); }

async function control(path, title, text, label, danger) {
  const ok = await modal({ title, text, confirm: label, danger });
  if (!ok) return;
  const btns = ["btn-estop", "btn-clear", "btn-force-exit"].map($);
  btns.forEach((b) => (b.disabled = true));
  say($("control-msg"), true, "sending… waiting for strategy to confirm");
  try {
    const scope = $("ctl-scope").value === "selected" && shown ? shown.key : "";
    const { status, doc } = await post(path, scope ? { reason: "dashboard", market: scope } : { reason: "dashboard" });
    if (status === 200) {
      // one market's command: that market's state (a global halt halts it too)
      const risk = (scope && doc.market_risk) || doc.risk || {};
      say($("control-msg"), true, `confirmed by strategy${scope ? " for " + scope : ""}: ${risk.halted ? "HALTED" : "active"}${risk.reasons && risk.reasons.length ? " (" + risk.reasons.join(", ") + ")" : ""}`);
    } else {
      say($("control-msg"), false, `${status}: ${doc.error || "failed"}`);
    }
  } catch (e) { say($("control-msg"), false, "request failed: " + e); }
  btns.forEach((b) => (b.disabled = false));
}

// ---------- config editor ----------
let cfgDoc = {};
let shownCfgVersion = null;
async function loadConfig() {
  const r = await fetch("/api/config");
  const doc = await r.json();
  cfgDoc = doc.config || {};
  const choices = doc.choices || {};
  const diff = doc.diff || {};  // the operator's fields, each with its shipped default
  const nDiff = Object.keys(diff).length;
  $("cfg-source").textContent = `v${doc.version} · ${doc.source || ""}` +
    (doc.hash ? ` · ${doc.hash}` : "") + ` · ${nDiff ? nDiff + " changed from defaults" : "shipped defaults"}`;
  $("cfg-form").innerHTML = Object.entries(cfgDoc).map(([k, v]) => {
    // a field with a set of values (order_type, a boolean) is a choice, never free text
    const opts = choices[k] || (typeof v === "boolean" ? ["true", "false"] : null);
    // a list or object (the `markets` list) is edited as JSON text
    const field = v !== null && typeof v === "object"
      ? `<textarea id="cfg-${k}" name="${esc(k)}" data-type="json" spellcheck="false">${esc(JSON.stringify(v))}</textarea>`
      : opts
      ? `<select id="cfg-${k}" name="${esc(k)}" data-type="${typeof v}">${opts.map((c) => `<option value="${esc(c)}"${String(c) === String(v) ? " selected" : ""}>${esc(c)}</option>`).join("")}</select>`
      : `<input id="cfg-${k}" name="${esc(k)}" value="${esc(v)}" data-type="${typeof v}">`;
    const changed = k in diff;
    const dflt = changed ? ` <span class="cfg-default" id="cfgdef-${k}">default ${esc(diff[k].default)}</span>` : "";
    return `<label for="cfg-${k}" title="${esc(k)}${changed ? " (changed from the default " + esc(diff[k].default) + ")" : ""}"${changed ? ' class="cfg-changed"' : ""}>${esc(k)}${dflt}</label>${field}
     <div class="ferr hidden" id="cfgerr-${k}"></div>`;
  }).join("");
}

function readConfigForm() {
  const out = {};
  for (const inp of $("cfg-form").querySelectorAll("input, select, textarea")) {
    const raw = inp.value.trim();
    if (inp.dataset.type === "json") {
      // invalid JSON goes as typed: strategy's validation names the field
      try { out[inp.name] = JSON.parse(raw); } catch (e) { out[inp.name] = raw; }
    } else if (inp.dataset.type === "number") out[inp.name] = raw === "" || Number.isNaN(Number(raw)) ? raw : Number(raw);
    else if (inp.dataset.type === "boolean") out[inp.name] = raw === "true";
    else out[inp.name] = raw;
  }
  return out;
}

async function saveConfig(ev) {
  ev.preventDefault();
  for (const el of $("cfg-form").querySelectorAll(".ferr")) el.classList.add("hidden");
  for (const el of $("cfg-form").querySelectorAll("input, select, textarea")) el.classList.remove("bad");
  // a merge patch: only the fields edited here, so a change made elsewhere meanwhile is kept
  const form = readConfigForm();
  const same = (a, b) => (a !== null && typeof a === "object" ? JSON.stringify(a) === JSON.stringify(b) : a === b);
  const patch = Object.fromEntries(Object.entries(form).filter(([k, v]) => !same(v, cfgDoc[k])));
  if (!Object.keys(patch).length) { say($("cfg-msg"), true, "no change"); return; }
  const { status, doc } = await post("/api/config", patch);
  if (status === 200) {
    const changed = Object.keys((doc.state && doc.state.changed) || {});
    say($("cfg-msg"), true, changed.length ? `applied: version ${doc.config_version} (${changed.join(", ")})` : "no change");
    loadConfig(); return;
  }
  const fe = doc.field_errors || {};
  for (const [k, msg] of Object.entries(fe)) {
    // "markets[1].window" is an error in the `markets` field: shown there with its path
    const base = $(`cfgerr-${k}`) ? k : k.split(/[.[]/)[0];
    const el = $(`cfgerr-${base}`);
    if (el) {
      el.textContent = base === k ? msg : [el.classList.contains("hidden") ? "" : el.textContent, `${k}: ${msg}`].filter(Boolean).join("\n");
      el.classList.remove("hidden"); $(`cfg-${base}`).classList.add("bad");
    }
  }
  say($("cfg-msg"), false, `${status}: ${Object.keys(fe).length ? Object.keys(fe).length + " field(s) invalid, nothing applied" : doc.error}`);
}

// ---------- recorded trades ----------
let tradesKey = "";
let tradesBook = "";  // "&venue=sim&mode=paper": this tree's book only
async function loadTrades() {
  const r = await fetch("/api/trades?limit=12" + tradesBook);
  if (!r.ok) return;
  const page = await r.json();
  $("trades-total").textContent = `${page.total} total`;
  $("trades").innerHTML = page.items.map((t) => {
    const pnl = t.pnl === null ? "" : `<span class="${t.pnl >= 0 ? "pnl-pos" : "pnl-neg"}">${signed(t.pnl, 2)}</span>`;
    return `<tr><td class="mono">${hhmmss(t.ts_ns)}</td><td class="mono" title="${esc(t.slug)}">${esc(t.market || t.slug)}</td><td>${esc(t.kind)}</td><td>${esc(t.side)}</td><td class="${t.outcome === "Up" ? "pnl-pos" : "pnl-neg"}">${esc(t.outcome)}</td><td class="r mono">${fmt(t.price, 3)}</td><td class="r mono">${fmt(t.size, 2)}</td><td class="r mono"${t.liquidity === "maker" ? ` title="maker fill: no fee, rebate ${fmt(t.rebate, 5)} USD"` : ""}>${fmt(t.fee, 4)}${t.rebate ? ` <span class="pnl-pos">+${fmt(t.rebate, 4)}</span>` : ""}</td><td class="r mono">${pnl}</td><td class="muted">${esc(t.venue || "?")} · ${t.dry_run ? "paper" : "REAL"}</td></tr>`;
  }).join("") || '<tr><td colspan="10" class="muted">no trades recorded yet</td></tr>';
}
function maybeReloadTrades(d) {
  // refetch only when something tradeable changed, not 5x a second
  const f = d.fills || [];
  const m = d.metrics || {};
  tradesBook = m.venue && m.mode ? `&venue=${encodeURIComponent(m.venue)}&mode=${encodeURIComponent(m.mode)}` : "";
  const key = `${tradesBook}|${f.length ? f[f.length - 1].client_order_id + f[f.length - 1].ts_fill_ns : ""}|${d.metrics && d.metrics.trades_today}|${d.metrics && d.metrics.daily_pnl}`;
  if (key !== tradesKey) {
    tradesKey = key;
    loadTrades().catch(() => {});
    setTimeout(() => loadTrades().catch(() => {}), 1200);  // the recorder commits every 0.5 s
  }
}

// ---------- wiring ----------
$("btn-estop").onclick = () => control("/api/emergency-stop", "Emergency stop", "Halt all new entries now. Open positions stay until you force an exit.", "STOP TRADING", true);
$("btn-clear").onclick = () => control("/api/emergency-stop/clear", "Clear emergency stop", "Allow strategy to enter trades again.", "Clear stop", false);
$("btn-force-exit").onclick = () => control("/api/force-exit", "Force exit", "Sell the open position at market now.", "Force exit", true);
$("cfg-save").onclick = saveConfig;
$("cfg-reload").onclick = (ev) => { ev.preventDefault(); loadConfig(); };
$("btn-token").onclick = async () => {
  const v = await modal({ title: "API token", text: "Needed when the server sets API_TOKEN. Kept in this browser only.", confirm: "Save", danger: false, input: true });
  if (v === null) return;
  token = v.trim();
  localStorage.setItem(TOKEN_KEY, token);
  if (ws) ws.close(); else connect();
};

makeCharts();
loadHistory(selected).finally(connect);
loadConfig().catch(() => say($("cfg-msg"), false, "could not load config"));
