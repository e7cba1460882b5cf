// The page of stroke-serve: a client of its own API (GET api/model, POST api/predict).
// Everything that comes from a file or the server is written with textContent or as an
// attribute value, never parsed as HTML: a file named `<img onerror=...>.png` stays text.
"use strict";

const state = { card: null, results: [], series: [], classes: [] };
const $ = (selector, root = document) => root.querySelector(selector);

function setStatus(text, isError = false) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("failed", isError);
}

function formatBytes(n) {
  return n >= 1048576 ? `${(n / 1048576).toFixed(0)} MB` : `${Math.ceil(n / 1024)} kB`;
}

function decisionText(rule, threshold, classes) {
  if (rule === "thresholds") {
    return "each label at its own threshold";
  }
  if (rule === "threshold") {
    return `P(${classes[1]}) ≥ ${Number(threshold).toFixed(4)}`;
  }
  return "most probable class";
}

async function loadCard() {
  const response = await fetch("api/model", { credentials: "same-origin" });
  if (!response.ok) {
    setStatus(`The model card could not be loaded (HTTP ${response.status}).`, true);
    return;
  }
  const card = await response.json();
  state.card = card;
  state.classes = card.classes;
  $("#notice").textContent = card.notice;
  $("#card-name").textContent = card.name;
  $("#card-classes").textContent = card.classes.join(", ");
  const channels = card.in_chans === 1 ? "1 channel" : `${card.in_chans} channels`;
  const windows = card.reads_dicom
    ? `; DICOM through window ${card.dicom_windows}`
    : "; images only (trained on image files: DICOM is refused)";
  $("#card-input").textContent = `${card.input_size} × ${card.input_size} px, ${channels}${windows}`;
  $("#card-checkpoint").textContent =
    `${card.checkpoint.file} (run ${card.checkpoint.run}), sha256 ${card.checkpoint.sha256.slice(0, 16)}`;
  $("#card-checkpoint").title = card.checkpoint.sha256;
  const thresholds = card.decision.thresholds;
  $("#card-decision").textContent = thresholds
    ? `${card.decision.source}: ` +
      Object.entries(thresholds).map(([label, t]) => `${label} ${t.toFixed(4)}`).join(", ")
    : card.decision.source;
  $("#card-decision").dataset.rule = card.decision.rule;
  document.body.dataset.ready = "true";
}

function checkLimits(files) {
  const limits = state.card ? state.card.limits : null;
  if (!limits) return null;
  if (files.length > limits.max_files) {
    return `${files.length} files: at most ${limits.max_files} at once.`;
  }
  const total = files.reduce((sum, f) => sum + f.size, 0);
  if (total > limits.max_request_bytes) {
    return `${formatBytes(total)} in all: at most ${formatBytes(limits.max_request_bytes)} at once.`;
  }
  return null;
}

async function upload(fileList) {
  const files = Array.from(fileList).filter((f) => !f.name.startsWith("."));
  if (!files.length) return;
  const problem = checkLimits(files);
  if (problem) {
    setStatus(problem, true);
    return;
  }
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  setStatus(`Predicting ${files.length} file${files.length > 1 ? "s" : ""}…`);
  $("#download-csv").disabled = true;
  document.body.dataset.busy = "true";
  try {
    const response = await fetch("api/predict?overlay=true&views=true", {
      method: "POST",
      body: form,
      credentials: "same-origin",
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      setStatus(`The server refused the upload (HTTP ${response.status}): ${body.detail || ""}`, true);
      return;
    }
    showResults(body);
  } catch (err) {
    setStatus(`The upload failed: ${err}`, true);
  } finally {
    delete document.body.dataset.busy;
  }
}

function showResults(body) {
  state.results = body.results;
  state.series = body.series;
  state.classes = body.classes;
  const container = $("#results");
  container.replaceChildren(...body.results.map(renderResult));
  renderSeries(body.series);
  const failed = body.results.filter((r) => r.error && !r.probabilities).length;
  const done = body.results.length - failed;
  setStatus(
    `${done} of ${body.results.length} file${body.results.length > 1 ? "s" : ""} predicted` +
      (failed ? `; ${failed} could not be read (see below).` : ".") +
      ` Request ${body.request_id}.`,
    failed > 0 && done === 0,
  );
  $("#download-csv").disabled = body.results.length === 0;
  document.body.dataset.results = String(body.results.length);
}

// a multi-label answer (`labels`, `thresholds`) marks each label's threshold on its bar and
// highlights every label found; a single-label one highlights the decided class
function renderBars(root, answer) {
  const found = answer.labels || [answer.predicted_class];
  for (const name of state.classes) {
    const row = $("#bar-template").content.firstElementChild.cloneNode(true);
    const p = answer.probabilities[name];
    row.dataset.class = name;
    row.dataset.probability = String(p);
    $(".label", row).textContent = name;
    $(".fill", row).style.width = `${(100 * p).toFixed(1)}%`;
    $(".value", row).textContent = p.toFixed(4);
    row.classList.toggle("decided", found.includes(name));
    if (answer.thresholds) {
      const t = answer.thresholds[name];
      const mark = document.createElement("span");
      mark.className = "threshold";
      mark.style.left = `${(100 * t).toFixed(1)}%`;
      mark.title = `threshold ${t.toFixed(4)}`;
      row.dataset.threshold = String(t);
      $(".bar", row).append(mark);
    }
    root.append(row);
  }
}

function decisionLine(answer) {
  const rule = decisionText(answer.decision_rule, answer.threshold, state.classes);
  if (answer.labels) {
    const found = answer.labels.length ? answer.labels.join(", ") : "none";
    return `Findings: ${found} (${rule})`;
  }
  return `Decision: ${answer.predicted_class} (${rule})`;
}

function renderResult(result) {
  const card = $("#result-template").content.firstElementChild.cloneNode(true);
  card.dataset.index = String(result.index);
  $(".name", card).textContent = result.name;
  $(".name", card).title = result.name;
  $(".type", card).textContent = result.type || "unknown type";
  $(".hash", card).textContent = `sha256 ${result.sha256.slice(0, 12)}`;
  $(".hash", card).title = result.sha256;
  if (result.series) {
    const badge = $(".series-badge", card);
    badge.hidden = false;
    badge.textContent = `series ${result.series}`;
  }
  if (result.error) {
    const error = $(".error", card);
    error.hidden = false;
    error.textContent = result.error;
  }
  if (!result.probabilities) {
    $(".body", card).hidden = true;
    card.classList.add("failed");
    return card;
  }
  renderBars($(".probabilities", card), result);
  const decision = $(".decision", card);
  decision.dataset.decided = result.predicted_class;
  decision.textContent = decisionLine(result);
  renderLesion(card, result.lesion);
  renderPictures(card, result);
  return card;
}

function renderLesion(card, lesion) {
  if (!lesion) return;
  const text = $(".lesion", card);
  text.hidden = false;
  const mm2 = lesion.area_mm2 === null ? "" : `, ${lesion.area_mm2.toFixed(1)} mm²`;
  text.textContent = `Lesion area: ${lesion.area_px} px${mm2}`;
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", "0 0 1 1");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.classList.add("outline");
  for (const polygon of lesion.outline) {
    const shape = document.createElementNS(svgNS, "polygon");
    shape.setAttribute("points", polygon.map(([x, y]) => `${x},${y}`).join(" "));
    svg.append(shape);
  }
  $(".view .frame", card).append(svg);
}

function renderPictures(card, result) {
  const images = result.images || {};
  const view = $(".view-image", card);
  if (images.model) view.src = images.model;
  else $(".view", card).hidden = true;
  if (images.gradcam) {
    $(".cam", card).hidden = false;
    $(".cam-image", card).src = images.gradcam;
  }
  const presets = (state.card ? state.card.window_presets : []).filter((w) => images[w]);
  if (result.type !== "dicom" || !presets.length) return;
  const select = $(".window-select", card);
  select.hidden = false;
  const own = state.card.dicom_windows;
  select.append(new Option(`the model's window (${own})`, "model"));
  for (const name of presets) select.append(new Option(name, name));
  const note = $(".window-note", card);
  note.hidden = false;
  note.textContent =
    `The prediction always uses the model's own window (${own}); ` +
    "the selector changes only what is displayed.";
  select.addEventListener("change", () => {
    view.src = images[select.value];
    view.dataset.window = select.value;
    $(".view-caption", card).textContent =
      select.value === "model" ? "as the model sees it" : `${select.value} window (display only)`;
  });
}

function renderSeries(series) {
  const section = $("#series-section");
  const body = $("#series-table tbody");
  body.replaceChildren();
  section.hidden = series.length === 0;
  if (!series.length) return;
  const how = series[0].aggregation;
  $("#series-hint").textContent =
    `Files of one patient's study (same PatientID and StudyInstanceUID), aggregated as ` +
    `stroke-eval does: ${how === "max" ? "the most suspicious slice" : "the mean over slices"}.`;
  for (const row of series) {
    const tr = document.createElement("tr");
    tr.dataset.series = String(row.series);
    tr.dataset.decided = row.predicted_class;
    const cells = [
      `series ${row.series}`,
      row.patient_id,
      String(row.n_images),
      state.classes.map((c) => `${c} ${row.probabilities[c].toFixed(4)}`).join(", "),
      row.labels
        ? decisionLine(row)
        : `${row.predicted_class} (${decisionText(row.decision_rule, row.threshold, state.classes)})`,
    ];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    if (row.labels) {
      // per label: the series' probability as a bar, its threshold marked, found ones bold
      const bars = tr.children[3];
      bars.replaceChildren();
      bars.classList.add("probabilities");
      renderBars(bars, row);
    }
    body.append(tr);
  }
}

// -- CSV ------------------------------------------------------------------------------------
function csvCell(value) {
  let text = value === null || value === undefined ? "" : String(value);
  // a spreadsheet would run a cell starting with = + - @ as a formula
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function csvText() {
  const classes = state.classes;
  const header = [
    "row", "name", "sha256", "type", "series", "predicted_class", "decision_rule", "threshold",
    ...classes.map((c) => `prob_${c}`), "lesion_area_px", "lesion_area_mm2", "error",
  ];
  const lines = [header];
  for (const r of state.results) {
    const probs = classes.map((c) => (r.probabilities ? r.probabilities[c] : ""));
    lines.push([
      "image", r.name, r.sha256, r.type, r.series, r.predicted_class,
      r.probabilities ? r.decision_rule : "", r.probabilities ? r.threshold : "", ...probs,
      r.lesion ? r.lesion.area_px : "", r.lesion ? r.lesion.area_mm2 : "", r.error,
    ]);
  }
  for (const s of state.series) {
    lines.push([
      `series (${s.aggregation})`, s.patient_id, "", "dicom", s.series, s.predicted_class,
      s.decision_rule, s.threshold, ...classes.map((c) => s.probabilities[c]), "", "", "",
    ]);
  }
  return lines.map((line) => line.map(csvCell).join(",")).join("\r\n") + "\r\n";
}

function downloadCsv() {
  const blob = new Blob([csvText()], { type: "text/csv" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = "stroke-predictions.csv";
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// -- wiring -----------------------------------------------------------------------------------
function wire() {
  const zone = $("#drop-zone");
  for (const id of ["#file-input", "#folder-input"]) {
    $(id).addEventListener("change", (event) => {
      upload(event.target.files);
      event.target.value = "";
    });
  }
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    upload(event.dataTransfer.files);
  });
  $("#download-csv").addEventListener("click", downloadCsv);
  loadCard().catch((err) => setStatus(`The model card could not be loaded: ${err}`, true));
}

document.addEventListener("DOMContentLoaded", wire);
