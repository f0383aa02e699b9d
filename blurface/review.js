"use strict";
// blurface review's page script. It is served as a file of its own because the page's
// Content-Security-Policy allows no inline script and no inline handler. Everything the
// server sends (names, reasons, decisions: a plan file is untrusted input) is put into the
// page as text (textContent, DOM nodes, attributes), never parsed as HTML.
//
// The token came in the URL; the page sends it in a header with every API call and in the
// query of the video and thumbnails, and drops it from the address bar so it does not stay in
// the history. There is no cookie: a cookie for 127.0.0.1 would go to every port on it.
const TOKEN = new URLSearchParams(location.search).get("token") || sessionStorage.getItem("blurface-token") || "";
sessionStorage.setItem("blurface-token", TOKEN);
history.replaceState(null, "", location.pathname);
function withToken(url) { return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN); }
// el("div", {className: "row", title: t}, child, "text", ...): an element; strings become text nodes.
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "dataset") Object.assign(e.dataset, v); else e[k] = v;
  }
  e.append(...children.filter(c => c !== null && c !== undefined && c !== false).map(c => typeof c === "object" ? c : String(c)));
  return e;
}
function thumb(u) { return el("img", { src: withToken(u), alt: "" }); }
const v = document.getElementById("v"), ov = document.getElementById("ov"), tl = document.getElementById("timeline");
const COLORS = { masked: "#e33", kept: "#3c3", unsure: "#ec3" };
let S = null, sel = null, scale = 1, lanes = {}, drag = null, ticked = new Set();

async function api(path, body) {
  const r = await fetch(path, { method: body ? "POST" : "GET", credentials: "same-origin",
    headers: body ? { "Content-Type": "application/json", "X-Blurface-Token": TOKEN } : { "X-Blurface-Token": TOKEN },
    body: body ? JSON.stringify(body) : undefined });
  const data = await r.json();
  if (!r.ok) { say(data.error || r.statusText); throw new Error(data.error); }
  return data;
}
function say(t) { document.getElementById("msg").textContent = t; }
function cat(t) { return t.category; }
function reason() { return document.getElementById("why").value.trim(); }

function frameNow() {
  const t = v.currentTime, times = S.times;
  let lo = 0, hi = times.length - 1;
  while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (times[mid] <= t + 1e-3) lo = mid; else hi = mid - 1; }
  return lo;
}
function seek(f) {
  f = Math.max(0, Math.min(S.times.length - 1, f));
  v.currentTime = S.times[f] + 0.25 / S.video.fps;
  draw();
}
function boxAt(t, f) {
  if (f < t.first || f > t.last) return null;
  let lo = 0, hi = t.frames.length - 1;
  while (lo <= hi) { const m = (lo + hi) >> 1; if (t.frames[m] === f) return t.boxes[m]; if (t.frames[m] < f) lo = m + 1; else hi = m - 1; }
  return null;
}

function draw() {
  if (!S) return;
  const f = frameNow(), g = ov.getContext("2d");
  g.clearRect(0, 0, ov.width, ov.height);
  for (const t of S.tracks) {
    const b = boxAt(t, f);
    if (!b) continue;
    const [x1, y1, x2, y2] = b.map(x => x * scale);
    g.lineWidth = t.id === sel ? 4 : 2;
    g.strokeStyle = COLORS[cat(t)];
    if (t.masked) { g.fillStyle = "rgba(220,40,40,0.35)"; g.fillRect(x1, y1, x2 - x1, y2 - y1); }
    g.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `#${t.id} ${t.label} ${t.masked ? "masked" : "kept"}`;
    g.font = "11px sans-serif";
    g.fillStyle = "#000"; g.fillRect(x1, y1 - 15, g.measureText(text).width + 4, 14);
    g.fillStyle = "#fff";
    g.fillText(text, x1 + 2, y1 - 4);
  }
  if (drag && drag.x2 !== undefined) {
    g.strokeStyle = "#0cf"; g.lineWidth = 2;
    g.strokeRect(drag.x1, drag.y1, drag.x2 - drag.x1, drag.y2 - drag.y1);
  }
  document.getElementById("clock").textContent = `${clock(S.times[f])} frame ${f}`;
  drawTimeline(f);
}
function clock(s) { const m = Math.floor(s / 60); return `${m}:${(s - 60 * m).toFixed(3).padStart(6, "0")}`; }

function layoutLanes() {
  lanes = {}; const ends = [];
  for (const t of [...S.tracks].sort((a, b) => a.first - b.first)) {
    let k = ends.findIndex(e => e < t.first);
    if (k < 0) { k = ends.length; ends.push(0); }
    ends[k] = t.last; lanes[t.id] = k;
  }
  tl.height = Math.max(40, 8 + 12 * ends.length);
}
function drawTimeline(f) {
  const g = tl.getContext("2d"), n = S.times.length, w = tl.width;
  g.clearRect(0, 0, w, tl.height);
  for (const t of S.tracks) {
    const x = w * t.first / n, x2 = w * (t.last + 1) / n, y = 4 + 12 * lanes[t.id];
    g.fillStyle = COLORS[cat(t)]; g.fillRect(x, y, Math.max(2, x2 - x), 9);
    if (t.id === sel) { g.strokeStyle = "#fff"; g.lineWidth = 2; g.strokeRect(x, y, Math.max(2, x2 - x), 9); }
  }
  g.fillStyle = "#fff"; g.fillRect(w * f / n, 0, 2, tl.height);
}
tl.addEventListener("click", e => {
  const r = tl.getBoundingClientRect(), x = e.clientX - r.left, y = e.clientY - r.top, n = S.times.length;
  const f = Math.floor(n * x / tl.width);
  const hit = S.tracks.find(t => f >= t.first && f <= t.last && Math.abs(y - (8 + 12 * lanes[t.id])) <= 6);
  if (hit) select(hit.id, true); else seek(f);
});

function trackRow(t) {
  const d = el("div", { className: "row" + (t.id === sel ? " sel" : ""), id: "track-" + t.id });
  const num = (cls, ph) => el("input", { type: "number", className: cls, min: t.first, max: t.last, placeholder: ph, step: 1 });
  const reasonLine = el("div", { className: "reason", title: t.reason }, t.reason);
  d.append(
    el("span", { className: "sw " + cat(t) }),
    ...t.thumbs.map(thumb),
    el("div", { className: "info" },
      el("b", {}, "#" + t.id), " ", el("span", { className: "who" }, t.label),
      " \u00b7 ", t.detail || "-",
      " \u00b7 ", el("span", { className: "decision" }, t.decision),
      " \u00b7 ", el("b", { className: "state" }, t.masked ? "MASKED" : "kept"),
      " ", el("span", { className: "small" }, `frames ${t.first}-${t.last}`),
      reasonLine,
      el("div", { className: "ctl" },
        el("button", { className: "toggle " + (t.masked ? "keep" : "mask") }, t.masked ? "keep" : "mask"),
        " from ", num("from", t.first), " to ", num("to", t.last), " ",
        el("button", { className: "part", title: "mask only these frames of the track" }, "mask part"),
        t.decision === "manual" ? el("button", { className: "trim", title: "keep only these frames" }, "trim") : null)));
  d.addEventListener("click", e => { if (e.target.tagName !== "INPUT" && e.target.tagName !== "BUTTON") select(t.id, true); });
  d.querySelector(".toggle").addEventListener("click", () => toggle(t.id));
  // Whole frame numbers, or the track's own ends where a box is left empty.
  const range = () => [[".from", t.first], [".to", t.last]].map(([c, dflt]) => {
    const x = d.querySelector(c).valueAsNumber;
    return Number.isInteger(x) ? x : dflt;
  });
  d.querySelector(".part").addEventListener("click", async () => {
    const [a, b] = range();
    await api("/api/track", { id: t.id, masked: true, reason: reason(), first: a, last: b });
    await refresh();
  });
  const trim = d.querySelector(".trim");
  if (trim) trim.addEventListener("click", async () => {
    const [a, b] = range();
    await api("/api/trim", { id: t.id, first: a, last: b, reason: reason() });
    await refresh();
  });
  return d;
}
function personRow(g, k) {
  const ts = g.map(id => S.tracks.find(t => t.id === id)).filter(Boolean);
  const masked = ts.filter(t => t.masked).length, frames = ts.reduce((a, t) => a + t.frames.length, 0);
  const links = [];
  for (const t of ts) links.push(el("a", { href: "#", dataset: { t: t.id } }, "#" + t.id), " ");
  const d = el("div", { className: "row", id: "person-" + k },
    el("input", { type: "checkbox", className: "tick", title: "tick two people to merge them" }),
    ...ts.slice(0, 4).filter(t => t.thumbs[0]).map(t => thumb(t.thumbs[0])),
    el("div", { className: "info" },
      el("b", {}, `person ${k + 1}`), " ",
      el("span", { className: "small" }, `${ts.length} track(s), ${frames} frames, ${masked} masked`),
      el("div", { className: "small" }, "tracks ", ...links, ts.length > 1 ? "(click a track, then split)" : null),
      el("div", { className: "ctl" },
        el("button", { className: "pmask mask" }, "mask person"), " ",
        el("button", { className: "pkeep keep" }, "keep person"), " ",
        el("button", { className: "split" }, "split selected out"), " ",
        el("input", { type: "text", className: "pname", placeholder: "name", value: `person_${k + 1}` }), " ",
        el("button", { className: "psave" }, "save .npz"))));
  d.querySelector(".tick").checked = ticked.has(k);
  d.querySelector(".tick").addEventListener("change", e => { e.target.checked ? ticked.add(k) : ticked.delete(k); });
  d.querySelectorAll("a[data-t]").forEach(a => a.addEventListener("click", e => { e.preventDefault(); select(+a.dataset.t, true); }));
  d.querySelector(".pmask").addEventListener("click", async () => { await api("/api/person", { person: k, masked: true, reason: reason() }); await refresh(); });
  d.querySelector(".pkeep").addEventListener("click", async () => { await api("/api/person", { person: k, masked: false, reason: reason() }); await refresh(); });
  d.querySelector(".split").addEventListener("click", async () => {
    if (sel === null || !g.includes(sel)) { say("select one of this person's tracks first"); return; }
    await api("/api/person/split", { track: sel }); await refresh();
  });
  d.querySelector(".psave").addEventListener("click", async () => {
    const r = await api("/api/person/save", { person: k, name: d.querySelector(".pname").value.trim() });
    say("saved " + r.path + " (use it with --target)");
  });
  return d;
}
document.getElementById("merge").addEventListener("click", async () => {
  const [a, b] = [...ticked];
  if (ticked.size !== 2) { say("tick exactly two people to merge"); return; }
  ticked.clear(); await api("/api/person/merge", { a, b }); await refresh();
});

function renderLists() {
  const tr = document.getElementById("tracks"), pe = document.getElementById("people");
  tr.replaceChildren(...S.tracks.map(trackRow));
  pe.replaceChildren(...S.people.map(personRow));
}
function select(id, go) {
  sel = id;
  document.querySelectorAll("#tracks .row").forEach(r => r.classList.toggle("sel", r.id === "track-" + id));
  const t = S.tracks.find(x => x.id === id);
  if (go && t) {
    v.pause(); seek(t.first);
    // Scroll the list only: scrollIntoView would scroll the whole window too.
    const row = document.getElementById("track-" + id), right = document.getElementById("right");
    if (row.offsetTop < right.scrollTop || row.offsetTop > right.scrollTop + right.clientHeight - 60) right.scrollTop = row.offsetTop - right.offsetTop;
  }
  draw();
}
async function toggle(id) {
  const t = S.tracks.find(x => x.id === id);
  if (!t) return;
  t.masked = !t.masked; t.category = t.decision === "unsure" ? "unsure" : (t.masked ? "masked" : "kept");
  draw();  // the overlay and the timeline change at once; the server confirms
  await api("/api/track", { id, masked: t.masked, reason: reason() });
  await refresh();
}
async function refresh() {
  S = await api("/api/state");
  layoutLanes(); renderLists(); draw();
  document.getElementById("paths").textContent = `Save writes ${S.save_path}; Render writes ${S.output}; ${S.review.length} change(s) logged`;
}

// Drawing a box around a missed face, on the paused picture.
ov.addEventListener("mousedown", e => { if (!v.paused) return; const r = ov.getBoundingClientRect(); drag = { x1: e.clientX - r.left, y1: e.clientY - r.top }; });
ov.addEventListener("mousemove", e => { if (!drag) return; const r = ov.getBoundingClientRect(); drag.x2 = e.clientX - r.left; drag.y2 = e.clientY - r.top; draw(); });
ov.addEventListener("mouseup", async () => {
  const d = drag; drag = null;
  if (!d || d.x2 === undefined || Math.abs(d.x2 - d.x1) < 6 || Math.abs(d.y2 - d.y1) < 6) { draw(); return; }
  const box = [Math.min(d.x1, d.x2), Math.min(d.y1, d.y2), Math.max(d.x1, d.x2), Math.max(d.y1, d.y2)].map(x => x / scale);
  say("following the face through its shot...");
  const r = await api("/api/box", { frame: frameNow(), box, reason: reason() });
  say("added track #" + r.track + " (masked); trim it if it ran too far");
  await refresh(); select(r.track, false);
});

document.getElementById("play").addEventListener("click", () => v.paused ? v.play() : v.pause());
document.getElementById("save").addEventListener("click", async () => { const r = await api("/api/save", {}); say("saved " + r.path); await refresh(); });
document.getElementById("render").addEventListener("click", async () => { await api("/api/render", {}); poll(); });
async function poll() {
  const r = await api("/api/render");
  document.querySelector("#bar div").style.width = (r.total ? 100 * r.done / r.total : 0) + "%";
  if (r.state === "running") { say(`rendering ${r.done}/${r.total} frames`); setTimeout(poll, 500); }
  else if (r.state === "done") say("rendered " + r.output);
  else if (r.state === "failed") say("render failed: " + r.error);
}
document.addEventListener("keydown", e => {
  if (e.target.tagName === "INPUT") return;
  if (e.key === " ") { e.preventDefault(); v.paused ? v.play() : v.pause(); }
  else if (e.key === "ArrowRight") { e.preventDefault(); v.pause(); seek(frameNow() + 1); }
  else if (e.key === "ArrowLeft") { e.preventDefault(); v.pause(); seek(frameNow() - 1); }
  else if (e.key === "m" && sel !== null) { toggle(sel); }
});
function tick() { draw(); if (!v.paused) requestAnimationFrame(tick); }
v.addEventListener("play", () => requestAnimationFrame(tick));
v.addEventListener("seeked", draw);
v.addEventListener("loadedmetadata", () => {
  v.width = ov.width = tl.width = v.videoWidth; v.height = ov.height = v.videoHeight;
  document.getElementById("left").style.width = v.videoWidth + "px";
  scale = v.videoHeight / S.video.height; draw();
});

(async () => {
  await refresh();
  document.getElementById("name").textContent = `${S.video.name}: ${S.tracks.length} tracks, ${S.people.length} people, mode ${S.mode}`;
  v.src = withToken("proxy.mp4");
  if (S.render.state === "running") poll();
})();
