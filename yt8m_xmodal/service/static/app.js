// The page of the search service: upload a file, draw the matches as cards.
// Plain browser JavaScript, no build step and no downloads of its own.
"use strict";

const $ = (id) => document.getElementById(id);
// YT8M's 4-character ids resolve to YouTube ids through a public JSONP file.
const YT8M_ID = /^[A-Za-z0-9_-]{4}$/;
const YT8M_LOOKUP = "https://data.yt8m.org/2/j/i/";
const YT8M_EXPLORER = "https://research.google.com/youtube8m/explore.html";
const LOOKUP_TIMEOUT_MS = 4000;
let chunkSeconds = null;
let galleryModality = "video";

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// One JSONP lookup at a time: the file calls the global i(id, youtubeId).
const lookups = [];
let lookupBusy = false;
function resolveYouTube(id) {
  return new Promise((resolve) => {
    lookups.push({ id, resolve });
    nextLookup();
  });
}
function nextLookup() {
  if (lookupBusy || !lookups.length) return;
  lookupBusy = true;
  const { id, resolve } = lookups.shift();
  const script = document.createElement("script");
  let done = false;
  const finish = (value) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    delete window.i;
    script.remove();
    lookupBusy = false;
    resolve(value);
    nextLookup();
  };
  const timer = setTimeout(() => finish(null), LOOKUP_TIMEOUT_MS);
  window.i = (yt8m, youtube) => finish(yt8m === id ? youtube : null);
  script.onerror = () => finish(null);
  script.src = `${YT8M_LOOKUP}${id.slice(0, 2)}/${id}.js`;
  document.head.appendChild(script);
}

function linkFor(id) {
  // Until (unless) the id resolves: a link to the YT8M explorer.
  const link = el("a", { href: YT8M_EXPLORER, target: "_blank", rel: "noopener",
                         class: "video-link" }, "Find it in the YT8M explorer");
  if (YT8M_ID.test(id)) {
    resolveYouTube(id).then((youtube) => {
      if (!youtube) return;
      link.href = `https://www.youtube.com/watch?v=${encodeURIComponent(youtube)}`;
      link.textContent = "Watch on YouTube";
    });
  }
  return link;
}

function strip(weights, modality, label) {
  const box = el("div", { class: `strip ${modality}` });
  box.appendChild(el("small", {}, label));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 100 36");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  if (weights && weights.length) {
    const top = Math.max(...weights, 1e-12);
    const width = 100 / weights.length;
    weights.forEach((w, c) => {
      const h = 34 * w / top;
      const r = document.createElementNS(svg.namespaceURI, "rect");
      r.setAttribute("x", (c * width).toFixed(2));
      r.setAttribute("y", (36 - h).toFixed(2));
      r.setAttribute("width", Math.max(width - 0.5, 0.3).toFixed(2));
      r.setAttribute("height", h.toFixed(2));
      const t = document.createElementNS(svg.namespaceURI, "title");
      const s = chunkSeconds || 1;
      t.textContent = `${c * s}-${(c + 1) * s} s: weight ${w.toFixed(3)}`;
      r.appendChild(t);
      svg.appendChild(r);
    });
    const seconds = chunkSeconds ? `${weights.length * chunkSeconds} s` : "";
    svg.setAttribute("aria-label", `${label}: attention over ${seconds}`);
  } else {
    svg.setAttribute("aria-label", `${label}: no attention known`);
  }
  box.appendChild(svg);
  return box;
}

const nameOf = (modality) => (modality === "audio" ? "song" : "video");

function render(result) {
  chunkSeconds = result.chunk_seconds || null;
  const out = $("results");
  out.replaceChildren();
  for (const query of result.queries) {
    const section = el("section", { class: "query" });
    section.appendChild(el("h2", {}, `${query.id} (${query.modality})`));
    const cards = el("ol", { class: "cards" });
    query.matches.forEach((match, rank) => {
      const card = el("li", { class: "card", tabindex: "0" });
      const head = el("div");
      head.appendChild(el("span", { class: "rank" }, `#${rank + 1}`));
      head.appendChild(el("span", { class: "score" }, match.score.toFixed(4)));
      card.appendChild(head);
      card.appendChild(el("div", { class: "id" }, match.id));
      card.appendChild(linkFor(match.id));
      const strips = el("div", { class: "strips" });
      strips.appendChild(strip(query.attention, query.modality, nameOf(query.modality)));
      strips.appendChild(strip(match.attention, galleryModality, nameOf(galleryModality)));
      card.appendChild(strips);
      cards.appendChild(card);
    });
    section.appendChild(cards);
    out.appendChild(section);
  }
}

async function search(file) {
  $("error").textContent = "";
  if (!file) {
    $("error").textContent = "Choose a file first.";
    return;
  }
  const body = new FormData();
  body.append("file", file);
  body.append("top_k", $("top_k").value || "10");
  $("status").textContent = `Searching with ${file.name}…`;
  try {
    const response = await fetch("/search", { method: "POST", body });
    const result = await response.json();
    if (!response.ok) {
      $("results").replaceChildren();
      $("status").textContent = "";
      $("error").textContent = result.error || `HTTP ${response.status}`;
      return;
    }
    const n = result.queries.length;
    $("status").textContent = `${n} ${n === 1 ? "query" : "queries"} from ${file.name}`;
    render(result);
  } catch (e) {
    $("status").textContent = "";
    $("error").textContent = `The search failed: ${e.message}`;
  }
}

function setUp() {
  const drop = $("drop");
  const input = $("file");
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer.files.length) search(e.dataTransfer.files[0]);
  });
  input.addEventListener("change", () => { if (input.files.length) search(input.files[0]); });
  $("search").addEventListener("submit", (e) => { e.preventDefault(); search(input.files[0]); });
  fetch("/health").then((r) => r.json()).then((h) => {
    galleryModality = h.modality;
    const query = h.modality === "video" ? "songs" : "videos";
    $("gallery").textContent = `${h.gallery} ${h.modality}s in the gallery; drop ${query} to search them (model ${h.model.slice(0, 12)}).`;
  }).catch(() => { $("gallery").textContent = "The service did not answer /health."; });
}

setUp();
