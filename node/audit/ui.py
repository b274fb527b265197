"""The auditor dashboard page (``GET /audit/ui``): static HTML and vanilla JavaScript, no
external resources (nodes run offline). It holds no data: it fetches
``/audit/log/dashboard`` with the token from its field (or ``#token=...`` in the URL, a
fragment browsers never send to the server) and renders the tables from the JSON."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bdx exchange log audit</title>
<style>
body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left}th{background:#eee}
.ok{color:#070;font-weight:bold}.bad{color:#b00;font-weight:bold}#error{color:#b00}
</style></head><body>
<h1>Exchange log audit</h1>
<p><label>Auditor token <input id="token" type="password" size="50"></label>
<label>since <input id="since" placeholder="2026-01-01T00:00:00Z"></label>
<label>until <input id="until"></label> <button id="load">Load</button></p>
<p id="error"></p>
<h2>Log integrity</h2><div id="integrity">not loaded</div>
<h2>Daily queries per peer</h2><table id="daily"></table>
<h2>Hit rate</h2><table id="hitrate"></table>
<h2>Refusals by reason</h2><table id="refusals"></table>
<h2>Quota use</h2><table id="quota"></table>
<script>
"use strict";
function cell(row, text, tag) {
  const c = document.createElement(tag || "td"); c.textContent = String(text); row.appendChild(c);
}
function table(id, head, rows) {
  const t = document.getElementById(id); t.replaceChildren();
  const h = t.insertRow(); head.forEach(x => cell(h, x, "th"));
  if (!rows.length) { const r = t.insertRow(); cell(r, "none"); return; }
  rows.forEach(values => { const r = t.insertRow(); values.forEach(v => cell(r, v)); });
}
function pct(rate) { return rate === null ? "n/a" : (100 * rate).toFixed(1) + "%"; }
function render(d) {
  const i = d.integrity, div = document.getElementById("integrity");
  div.replaceChildren();
  const s = document.createElement("p"); s.id = "integrity-status";
  s.className = i.ok ? "ok" : "bad";
  s.textContent = i.ok ? "VERIFIED" : "TAMPERED: " + i.reason + " (" + i.message + ")";
  div.appendChild(s);
  const cp = i.latest_checkpoint;
  const p = document.createElement("p"); p.id = "integrity-detail";
  p.textContent = "origin " + i.origin + ", " + i.tree_size + " entries, " +
    (cp ? "latest checkpoint size " + cp.size + " at " + cp.timestamp + ", " +
          cp.cosignatures + " cosignature(s)" : "no checkpoint yet");
  div.appendChild(p);
  table("daily", ["day", "peer", "direction", "queries"],
        d.daily_queries.map(q => [q.day, q.peer, q.direction, q.queries]));
  table("hitrate", ["direction", "hit", "no hit", "refused", "error", "hit rate"],
        Object.entries(d.hit_rate).map(([k, v]) =>
          [k, v.hit, v.no_hit, v.refused, v.error, pct(v.rate)]));
  table("refusals", ["reason", "count"], Object.entries(d.refusals));
  table("quota", ["day", "peer", "modality", "used"],
        d.quota.map(q => [q.day, q.peer, q.modality, q.used]));
}
async function load() {
  const err = document.getElementById("error"); err.textContent = "";
  const params = new URLSearchParams();
  for (const k of ["since", "until"]) {
    const v = document.getElementById(k).value.trim(); if (v) params.set(k, v);
  }
  try {
    const r = await fetch("/audit/log/dashboard?" + params, {
      headers: {"Authorization": "Bearer " + document.getElementById("token").value.trim()}});
    const body = await r.json();
    if (!r.ok) { err.textContent = r.status + " " + body.error + ": " + body.detail; return; }
    render(body);
  } catch (e) { err.textContent = "request failed: " + e; }
}
document.getElementById("load").addEventListener("click", load);
const m = /(?:^|&)token=([^&]+)/.exec(location.hash.slice(1));
if (m) { document.getElementById("token").value = decodeURIComponent(m[1]); load(); }
</script></body></html>
"""
