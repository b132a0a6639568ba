//! `/status`: an HTML page for people, like HAProxy's stats page: every
//! pool and backend with health, breaker, in-flight, latency, request rate
//! and error rate, colour-coded. The first state is rendered here, so the
//! page shows it without JavaScript; a small script then refreshes the cells
//! in place from `/api/v1/pools` every 2 s (no reload, no flicker). No
//! external asset.

use crate::snapshot::Snapshot;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn page(snap: &Snapshot) -> String {
    let mut rows = String::new();
    for p in snap.pools.values() {
        rows.push_str(&format!(
            "<tbody data-pool=\"{0}\"><tr class=\"pool\"><th colspan=\"8\">pool <b>{0}</b> <span class=\"dim\">{1}</span></th></tr>",
            esc(&p.name),
            p.config.strategy.as_str()
        ));
        for m in &p.members {
            let b = &m.backend;
            let health = if b.is_up() { "up" } else { "down" };
            let breaker = b.breaker.state().name();
            let (requests, errors) = b.totals();
            rows.push_str(&format!(
                "<tr class=\"backend\" data-backend=\"{pool}|{addr}\">\
                 <td class=\"addr\">{addr}</td><td class=\"weight\">{weight}</td>\
                 <td class=\"health s-{health}\">{health}</td><td class=\"breaker s-{breaker}\">{breaker}</td>\
                 <td class=\"in_flight\">{in_flight}</td><td class=\"latency\">{latency:.1} ms</td>\
                 <td class=\"rate\" data-total=\"{requests}\">&ndash;</td><td class=\"errors\" data-total=\"{errors}\">&ndash;</td></tr>",
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
td.hot{color:#8a1515;font-weight:600}
#note{margin:8px 0 16px}
</style></head><body>
<h1>sluice <span class="dim">status</span></h1>
<div id="note" class="dim">Refreshes every 2 s. Rates are per second over the last refresh.</div>
<table><thead><tr><th>backend</th><th>weight</th><th>health</th><th>breaker</th><th>in flight</th><th>latency</th><th>req/s</th><th>errors</th></tr></thead>
{{ROWS}}
</table>
<script>
"use strict";
let last = null;
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
  } catch (e) {
    document.getElementById("note").textContent = "Cannot reach sluice: " + e;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body></html>
"#;
