//! `/status`: an HTML page for people, like HAProxy's stats page: every
//! pool and backend with health, breaker, in-flight, latency, request rate
//! and error rate, colour-coded. The first state is rendered here, so the
//! page shows it without JavaScript; a small script then refreshes the cells
//! in place from `/api/v1/pools` every 2 s (no reload, no flicker). No
//! external asset.

use crate::history::{History, Sample};
use crate::snapshot::Snapshot;
use std::fmt::Write;

/// A sparkline of `values` (oldest first, one a second, up to five
/// minutes) as inline SVG: a line over a light area, its latest value and
/// maximum in the tooltip. Empty history: an empty frame.
pub fn sparkline(values: &[f32], colour: &str, title: &str, unit: &str) -> String {
    const W: f32 = 120.0;
    const H: f32 = 26.0;
    let max = values.iter().copied().fold(0.0f32, f32::max);
    let last = values.last().copied().unwrap_or(0.0);
    let mut points = String::new();
    let n = crate::history::SAMPLES as f32;
    // Right-aligned: the newest sample at the right edge.
    let offset = n - values.len() as f32;
    for (i, v) in values.iter().enumerate() {
        let x = (offset + i as f32) * W / (n - 1.0);
        let y = if max > 0.0 {
            H - 1.0 - v / max * (H - 2.0)
        } else {
            H - 1.0
        };
        let _ = write!(points, "{x:.1},{y:.1} ");
    }
    let area = match values.len() {
        0 => String::new(),
        _ => format!(
            "<polygon points=\"{:.1},{H} {points}{W},{H}\" fill=\"{colour}\" fill-opacity=\"0.15\"/>",
            offset * W / (n - 1.0)
        ),
    };
    format!(
        "<svg class=\"chart\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{title}\">\
         <title>{title}: now {last:.1}{unit}, max {max:.1}{unit} (last 5 min)</title>\
         <rect width=\"{W}\" height=\"{H}\" fill=\"#fafbfc\" stroke=\"#e6e8ec\"/>{area}\
         <polyline points=\"{points}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"/></svg>"
    )
}

/// The three charts of a series of samples.
fn charts(samples: &[Sample]) -> String {
    let pick = |f: fn(&Sample) -> f32| samples.iter().map(f).collect::<Vec<f32>>();
    format!(
        "<td class=\"charts\">{}{}{}</td>",
        sparkline(&pick(|s| s.requests), "#2b6cb0", "requests/s", "/s"),
        sparkline(&pick(|s| s.errors), "#c53030", "errors/s", "/s"),
        sparkline(&pick(|s| s.p99_ms), "#6b46c1", "p99 latency", " ms"),
    )
}

/// A pool's samples: backends' requests and errors added, the worst p99.
fn pool_samples(each: &[Vec<Sample>]) -> Vec<Sample> {
    let len = each.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = vec![Sample::default(); len];
    for s in each {
        // Right-aligned: a backend newer than the others has fewer samples.
        let skip = len - s.len();
        for (i, x) in s.iter().enumerate() {
            let o = &mut out[skip + i];
            o.requests += x.requests;
            o.errors += x.errors;
            o.p99_ms = o.p99_ms.max(x.p99_ms);
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn page(snap: &Snapshot, history: &History) -> String {
    let mut rows = String::new();
    for p in snap.pools.values() {
        let each: Vec<Vec<Sample>> = p
            .members
            .iter()
            .map(|m| history.of(&p.name, &m.backend.addr))
            .collect();
        rows.push_str(&format!(
            "<tbody data-pool=\"{0}\"><tr class=\"pool\" data-charts=\"{0}\"><th colspan=\"9\">pool <b>{0}</b> <span class=\"dim\">{1}</span></th>{2}</tr>",
            esc(&p.name),
            p.config.strategy.as_str(),
            charts(&pool_samples(&each)),
        ));
        for (m, samples) in p.members.iter().zip(&each) {
            let b = &m.backend;
            let health = if b.is_up() { "up" } else { "down" };
            let breaker = b.breaker.state().name();
            let (requests, errors) = b.totals();
            rows.push_str(&format!(
                "<tr class=\"backend\" data-backend=\"{pool}|{addr}\">\
                 <td class=\"addr\">{addr}</td><td class=\"weight\">{weight}</td>\
                 <td class=\"admin_state s-{state}\">{state}</td><td class=\"health s-{health}\">{health}</td><td class=\"breaker s-{breaker}\">{breaker}</td>\
                 <td class=\"in_flight\">{in_flight}</td><td class=\"latency\">{latency:.1} ms</td>\
                 <td class=\"rate\" data-total=\"{requests}\">&ndash;</td><td class=\"errors\" data-total=\"{errors}\">&ndash;</td>{charts}</tr>",
                charts = charts(samples),
                state = b.admin_state().name(),
                pool = esc(&p.name),
                addr = esc(&b.addr),
                weight = m.weight,
                in_flight = b.in_flight(),
                latency = b.latency_ns() / 1e6,
            ));
        }
        rows.push_str("</tbody>");
    }
    TEMPLATE.replace("{{ROWS}}", &rows)
}

const TEMPLATE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sluice status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#f6f7f9}
h1{font-size:20px;margin:0 0 4px}.dim{color:#7a8190;font-weight:normal}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 3px #0002;min-width:760px}
th,td{padding:6px 12px;text-align:left;border-bottom:1px solid #e6e8ec}
thead th{background:#1d2330;color:#fff;font-weight:600}
tr.pool th{background:#eef0f4}
td.addr{font-family:ui-monospace,monospace}
.s-up,.s-closed{background:#d9f5e1;color:#12612b}
.s-down,.s-open{background:#fbdada;color:#8a1515;font-weight:600}
.s-half_open{background:#fff1cc;color:#7a5600}
.s-drain{background:#fff1cc;color:#7a5600}.s-maint{background:#e2e4ea;color:#3b4252;font-weight:600}
td.charts{white-space:nowrap;padding:3px 8px}svg.chart{margin-right:4px;vertical-align:middle}
.legend span{display:inline-block;width:10px;height:3px;margin:0 4px 2px 10px;vertical-align:middle}
td.hot{color:#8a1515;font-weight:600}
#note{margin:8px 0 16px}
</style></head><body>
<h1>sluice <span class="dim">status</span></h1>
<div id="note" class="dim">Refreshes every 2 s. Rates are per second over the last refresh.</div>
<table><thead><tr><th>backend</th><th>weight</th><th>state</th><th>health</th><th>breaker</th><th>in flight</th><th>latency</th><th>req/s</th><th>errors</th><th class="legend">last 5 min:<span style="background:#2b6cb0"></span>req/s<span style="background:#c53030"></span>errors/s<span style="background:#6b46c1"></span>p99</th></tr></thead>
{{ROWS}}
</table>
<script>
"use strict";
let last = null, ticks = 0;
// The charts are drawn by sluice: every 10 s, take them from a fresh page.
async function charts() {
  const html = await (await fetch("/status", {cache: "no-store"})).text();
  const doc = new DOMParser().parseFromString(html, "text/html");
  for (const row of doc.querySelectorAll("tr[data-backend], tr[data-charts]")) {
    const sel = row.dataset.backend !== undefined
      ? 'tr[data-backend="' + CSS.escape(row.dataset.backend) + '"]'
      : 'tr[data-charts="' + CSS.escape(row.dataset.charts) + '"]';
    const here = document.querySelector(sel), fresh = row.querySelector("td.charts");
    if (here && fresh) here.querySelector("td.charts").innerHTML = fresh.innerHTML;
  }
}
function cell(row, cls) { return row.querySelector("td." + cls); }
function setState(td, v) { td.textContent = v; td.className = td.className.replace(/ s-\S+/, "") + " s-" + v; }
async function refresh() {
  try {
    const r = await fetch("/api/v1/pools", {cache: "no-store"});
    const data = await r.json();
    const now = performance.now();
    const secs = last ? (now - last) / 1000 : 0;
    for (const p of data.pools) for (const b of p.backends) {
      const row = document.querySelector('tr[data-backend="' + CSS.escape(p.name + "|" + b.addr) + '"]');
      if (!row) { location.reload(); return; }  // the config changed: new rows
      setState(cell(row, "health"), b.health);
      setState(cell(row, "admin_state"), b.admin_state);
      cell(row, "weight").textContent = b.weight;
      setState(cell(row, "breaker"), b.breaker);
      cell(row, "in_flight").textContent = b.in_flight;
      cell(row, "latency").textContent = b.latency_ms.toFixed(1) + " ms";
      const rate = cell(row, "rate"), errs = cell(row, "errors");
      const dReq = b.requests - Number(rate.dataset.total), dErr = b.errors - Number(errs.dataset.total);
      if (secs > 0) {
        rate.textContent = (dReq / secs).toFixed(1);
        const pct = dReq > 0 ? 100 * dErr / dReq : 0;
        errs.textContent = pct.toFixed(1) + " %";
        errs.classList.toggle("hot", pct >= 5);
      }
      rate.dataset.total = b.requests; errs.dataset.total = b.errors;
    }
    document.getElementById("note").textContent = "Updated " + new Date().toLocaleTimeString() + ". Refreshes every 2 s; rates are per second over the last refresh.";
    last = now;
    if (++ticks % 5 === 0) await charts();
  } catch (e) {
    document.getElementById("note").textContent = "Cannot reach sluice: " + e;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body></html>
"#;
