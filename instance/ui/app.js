// The instance web UI's live parts, without a framework: the execution's
// Gantt and logs following the API's event streams (same origin, the
// session cookie), the log level filter and bulk selection. Pages work
// without this script; it only keeps them current.
"use strict";

const LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];
const SVG = "http://www.w3.org/2000/svg";

function stateClass(name) { return "state-" + String(name || "").toLowerCase(); }

function badge(name) {
  const span = document.createElement("span");
  span.className = "state " + stateClass(name);
  span.textContent = name;
  return span;
}

// The Gantt: its rows redrawn from each execution event.
function ganttRow(run, start, end, span) {
  const from = Math.max(Date.parse(run.state.startDate) - start, 0);
  const to = Math.max((run.state.endDate ? Date.parse(run.state.endDate) : end) - start, from);
  const name = run.taskId + (run.value ? " [" + run.value + "]" : "");
  const row = document.createElement("div");
  row.className = "gantt-row";
  const label = document.createElement("span");
  label.className = "gantt-name";
  label.append(name + " ", badge(run.state.current));
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "gantt-track");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", name + ": " + run.state.current + ", from " + (from / 1000).toFixed(1) + " s to " + (to / 1000).toFixed(1) + " s");
  svg.setAttribute("viewBox", "0 0 1000 20");
  svg.setAttribute("preserveAspectRatio", "none");
  const rect = document.createElementNS(SVG, "rect");
  rect.setAttribute("class", "bar " + stateClass(run.state.current));
  rect.setAttribute("x", (from / span * 1000).toFixed(1));
  rect.setAttribute("y", "3");
  rect.setAttribute("width", Math.max((to - from) / span * 1000, 4).toFixed(1));
  rect.setAttribute("height", "14");
  svg.appendChild(rect);
  const time = document.createElement("span");
  time.className = "gantt-time";
  time.textContent = ((to - from) / 1000).toFixed(1) + " s";
  row.append(label, svg, time);
  return row;
}

function drawGantt(box, execution) {
  const rows = box.querySelector(".gantt-rows");
  const empty = box.querySelector(".gantt-empty");
  const runs = execution.taskRunList || [];
  if (empty && runs.length) empty.remove();
  const start = Date.parse(execution.state.startDate);
  const end = execution.state.endDate ? Date.parse(execution.state.endDate) : Date.now();
  const span = Math.max(end - start, 1);
  rows.replaceChildren(...runs.map((run) => ganttRow(run, start, end, span)));
  const state = document.getElementById("execution-state");
  if (state) state.replaceChildren(badge(execution.state.current));
}

function followGantt(box) {
  if (box.dataset.ended) return;
  let last = null;
  // Running bars grow with the clock between events.
  const tick = window.setInterval(() => { if (last) drawGantt(box, last); }, 1000);
  const source = new EventSource(box.dataset.follow, { withCredentials: true });
  source.onmessage = (event) => {
    last = JSON.parse(event.data);
    drawGantt(box, last);
    if (last.state.endDate) {
      source.close();
      window.clearInterval(tick);
      box.dataset.ended = "true";
      // Drawn again by the server: its end, outputs and every log line.
      window.setTimeout(() => window.location.reload(), 1000);
    }
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED || box.dataset.ended) {
      source.close();
      window.clearInterval(tick);
    }
  };
}

// Logs: lines after those drawn with the page, appended as they come.
function levelShown(level) {
  const select = document.querySelector("select[data-log-filter]");
  const least = select ? LEVELS.indexOf(select.value) : 0;
  const rank = LEVELS.indexOf(level);
  return (rank < 0 ? 2 : rank) >= least;
}

function logLine(entry) {
  const li = document.createElement("li");
  li.className = "log level-" + String(entry.level).toLowerCase();
  li.dataset.level = entry.level;
  const time = document.createElement("time");
  time.textContent = String(entry.timestamp).slice(11, 23);
  const level = document.createElement("span");
  level.className = "level";
  level.textContent = entry.level;
  li.append(time, " ", level);
  if (entry.taskId) {
    const task = document.createElement("span");
    task.className = "task";
    task.textContent = entry.taskId;
    li.append(" ", task);
  }
  const message = document.createElement("span");
  message.className = "message";
  message.textContent = entry.message;
  li.append(" ", message);
  li.hidden = !levelShown(entry.level);
  return li;
}

function followLogs(list) {
  if (list.dataset.ended) return;
  let after = Number(list.dataset.after || 0);
  const source = new EventSource(list.dataset.follow, { withCredentials: true });
  source.onmessage = (event) => {
    const seq = Number(event.lastEventId || 0);
    if (seq && seq <= after) return;
    after = seq || after;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.appendChild(logLine(JSON.parse(event.data)));
    if (atBottom) list.scrollTop = list.scrollHeight;
  };
  // The stream ends once the execution has ended and every line was sent.
  source.onerror = () => source.close();
}

function filterLogs(select) {
  select.addEventListener("change", () => {
    document.querySelectorAll("#logs li").forEach((li) => { li.hidden = !levelShown(li.dataset.level); });
  });
}

// Bulk selection: "select all" of a page's rows.
function selectAll(box) {
  box.addEventListener("change", () => {
    const form = box.closest("form");
    form.querySelectorAll('input[type="checkbox"][name="ids"]').forEach((c) => { c.checked = box.checked; });
  });
}

// Bulk delete and kill ask first.
function confirmBulk(button) {
  button.addEventListener("click", (event) => {
    const form = button.form;
    const count = form.querySelectorAll('input[name="ids"]:checked, input[type="hidden"][name="ids"]').length;
    if (count === 0) { event.preventDefault(); window.alert("Select at least one execution."); return; }
    if ((button.value === "delete" || button.value === "kill") && !window.confirm(button.textContent + " " + count + " execution(s)?")) {
      event.preventDefault();
    }
  });
}

// Buttons that ask first (data-confirm holds the question).
function confirmFirst(button) {
  button.addEventListener("click", (event) => {
    if (!window.confirm(button.dataset.confirm)) event.preventDefault();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("button[data-confirm]").forEach(confirmFirst);
  document.querySelectorAll(".gantt[data-follow]").forEach(followGantt);
  document.querySelectorAll("ol.logs[data-follow]").forEach(followLogs);
  document.querySelectorAll("select[data-log-filter]").forEach(filterLogs);
  document.querySelectorAll("input[data-select-all]").forEach(selectAll);
  document.querySelectorAll('form[action="/ui/executions/bulk"] button[name="action"]').forEach(confirmBulk);
});
