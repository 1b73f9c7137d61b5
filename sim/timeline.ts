/**
 * The message-flow diagram of a run (`deno task sim FILE --timeline out.html`):
 * a self-contained HTML page (inline CSS and JS, nothing fetched) built from
 * the run's trace. Time runs left to right; there is one lane per device and
 * per relay. Every user message is drawn twice: device → relay when it was
 * sent (to the time the device's next request reached the relay) and
 * relay → device when it was pulled (from the time the pulling request reached
 * the relay). Requests are faint ticks, lost requests red crosses. Offline,
 * crash and partition spans are shaded; the message a failing expectation
 * names is drawn thick and red. Zoom with the slider or Ctrl + wheel; filter
 * by user, device, message uuid (a prefix will do) or type.
 *
 * @module
 */
import type { Report } from "./run.ts";
import type { Scenario } from "./scenario_types.ts";

/** Options of {@linkcode timelineHtml}. */
export interface TimelineOptions {
  /** The scenario that ran: its devices, relays and steps (for the shaded spans). */
  scenario: Scenario;
  /** The run's report: its title line and the failing message. */
  report?: Report;
}

/** Lane height in px. */
const laneHeightPx = 40;
/** Height of the time axis under the lanes, in px. */
const axisPx = 18;
/** Width of the whole run at zoom 1, in px. */
const baseWidthPx = 1200;
/** Elements drawn at most (arrows, ticks, spans); more are left out, with a note. */
export const timelineElementsMax = 60_000;

/** An arrow or a tick between two lanes. */
interface Flow {
  /** chat | sync | forward | ack | hello | pull | drop */
  cls: string;
  type: string;
  uuid: string;
  device: string;
  from: string;
  to: string;
  t1: number;
  t2: number;
}

interface Span {
  cls: "offline" | "crash" | "partition";
  lane: string;
  t1: number;
  t2: number;
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function classOf(type: string): string {
  if (type === "chat" || type === "ack" || type === "hello") return type;
  if (type === "sync:forward") return "forward";
  if (type.startsWith("sync:")) return "sync";
  return "other";
}

/** The uuid of the message a failing expectation names, if it names one that was traced. */
function failingUuid(report: Report | undefined, uuids: Set<string>): string {
  for (const e of report?.expectations ?? []) {
    if (e.ok) continue;
    const named = /message ([0-9a-f-]{36})/.exec(e.detail)?.[1];
    if (named && uuids.has(named)) return named;
    for (const match of e.detail.match(UUID) ?? []) if (uuids.has(match)) return match;
  }
  return "";
}

/** Pairs the trace's messages with the requests that carried them. */
function flows(trace: Record<string, unknown>[], home: string): Flow[] {
  const out: Flow[] = [];
  const lastRequest = new Map<string, { t: number; relay: string }>();
  const waiting = new Map<string, Flow[]>(); // device → sent messages not yet carried
  for (const line of trace) {
    const t = Number(line.t ?? 0);
    const device = String(line.device ?? "");
    switch (line.kind) {
      case "net.deliver": {
        const relay = String(line.relay);
        lastRequest.set(device, { t, relay });
        for (const f of waiting.get(device) ?? []) {
          f.to = relay;
          f.t2 = t;
        }
        waiting.delete(device);
        out.push({
          cls: "pull",
          type: "request",
          uuid: "",
          device,
          from: device,
          to: relay,
          t1: t,
          t2: t,
        });
        break;
      }
      case "net.drop":
        out.push({
          cls: "drop",
          type: "lost request",
          uuid: "",
          device,
          from: device,
          to: String(line.relay),
          t1: t,
          t2: t,
        });
        break;
      case "msg.out": {
        const type = String(line.type);
        const f: Flow = {
          cls: classOf(type),
          type,
          uuid: String(line.uuid),
          device,
          from: device,
          to: home,
          t1: t,
          t2: t,
        };
        out.push(f);
        waiting.set(device, [...(waiting.get(device) ?? []), f]);
        break;
      }
      case "msg.in": {
        const type = String(line.type);
        const request = lastRequest.get(device);
        out.push({
          cls: classOf(type),
          type,
          uuid: String(line.uuid),
          device,
          from: request?.relay ?? home,
          to: device,
          t1: Math.min(request?.t ?? t, t),
          t2: t,
        });
        break;
      }
    }
  }
  return out;
}

/** Offline, crash and partition spans from the scenario's steps. */
function spans(scenario: Scenario, endMs: number): Span[] {
  const out: Span[] = [];
  const open = new Map<string, Span>();
  for (const step of scenario.steps) {
    if (step.kind === "offline" || step.kind === "crash") {
      const key = `${step.kind}|${step.device}`;
      if (open.has(key)) continue;
      const span: Span = { cls: step.kind, lane: step.device, t1: step.atMs, t2: endMs };
      open.set(key, span);
      out.push(span);
    } else if (step.kind === "online" || step.kind === "restart") {
      const key = `${step.kind === "online" ? "offline" : "crash"}|${step.device}`;
      const span = open.get(key);
      if (span) span.t2 = step.atMs;
      open.delete(key);
    } else if (step.kind === "partition") {
      for (const lane of step.devices) {
        out.push({ cls: "partition", lane, t1: step.atMs, t2: step.atMs + step.forMs });
      }
    }
  }
  return out;
}

/**
 * The timeline page of a run, from its trace lines (as `runScenario`'s
 * `trace` option gives them).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseScenario } from "./scenario.ts";
 * import { timelineHtml } from "./timeline.ts";
 * const scenario = parseScenario({
 *   name: "t",
 *   users: [{ name: "a", devices: ["p"] }, { name: "b", devices: ["p"] }],
 * }, "t.yaml");
 * const html = timelineHtml([
 *   { t: 5, kind: "msg.out", device: "a/p", type: "chat", uuid: "u1" },
 *   { t: 40, kind: "net.deliver", device: "a/p", relay: "relay", bytes: 300 },
 *   { t: 90, kind: "net.deliver", device: "b/p", relay: "relay", bytes: 100 },
 *   { t: 120, kind: "msg.in", device: "b/p", type: "chat", uuid: "u1" },
 * ], { scenario });
 * assert(html.includes('data-lane="a/p"') && html.includes('data-lane="relay"'));
 * ```
 */
export function timelineHtml(trace: Record<string, unknown>[], options: TimelineOptions): string {
  const { scenario, report } = options;
  const devices = scenario.users.flatMap((u) => u.devices.map((d) => `${u.name}/${d}`));
  const lanes = [...devices, ...scenario.servers];
  const y = new Map(lanes.map((lane, i) => [lane, laneHeightPx * i + laneHeightPx / 2]));
  const endMs = Math.max(1, ...trace.map((l) => Number(l.t ?? 0)));
  const all = flows(trace, scenario.servers[0]);
  const uuids = new Set(all.map((f) => f.uuid).filter((u) => u !== ""));
  const failing = failingUuid(report, uuids);
  const shaded = spans(scenario, endMs);
  // Requests go first when the page would be too big; message arrows stay.
  let kept = all;
  if (all.length + shaded.length > timelineElementsMax) {
    const messages = all.filter((f) => f.cls !== "pull");
    const requests = all.filter((f) => f.cls === "pull");
    const room = Math.max(0, timelineElementsMax - shaded.length - messages.length);
    const every = Math.ceil(requests.length / Math.max(1, room));
    kept = [
      ...(room > 0 ? requests.filter((_, i) => i % every === 0) : []),
      ...messages.slice(0, timelineElementsMax - shaded.length),
    ];
  }
  const dropped = all.length - kept.length;
  // Requests beneath, the failing message on top.
  const rank = (f: Flow) => f.cls === "pull" ? 0 : failing !== "" && f.uuid === failing ? 2 : 1;
  kept = [...kept].sort((a, b) => rank(a) - rank(b));
  const scale = baseWidthPx / endMs;
  const x = (t: number) => (t * scale).toFixed(1);
  const heightPx = laneHeightPx * lanes.length + axisPx;

  const laneRows = lanes.map((lane, i) => {
    const kind = i < devices.length ? "device" : "relay";
    return `<g class="lane ${kind}" data-lane="${
      escape(lane)
    }"><line x1="0" x2="${baseWidthPx}" y1="${y.get(lane)}" y2="${y.get(lane)}"/></g>`;
  });
  const spanRects = shaded.filter((s) => y.has(s.lane)).map((s) =>
    `<rect class="span ${s.cls}" data-t1="${s.t1}" data-t2="${s.t2}" x="${x(s.t1)}" width="${
      x(s.t2 - s.t1)
    }" y="${y.get(s.lane)! - laneHeightPx / 2 + 2}" height="${laneHeightPx - 4}"><title>${s.cls} ${
      escape(s.lane)
    } ${s.t1}–${s.t2} ms</title></rect>`
  );
  const arrows = kept.filter((f) => y.has(f.from) && y.has(f.to)).map((f) => {
    const hot = failing !== "" && f.uuid === failing ? " fail" : "";
    const y1 = y.get(f.from)!;
    const y2 = y.get(f.to)!;
    const title = `${f.type} ${f.uuid} ${f.from} → ${f.to} ${f.t1}–${f.t2} ms`;
    if (f.cls === "drop") {
      return `<path class="flow drop" data-t1="${f.t1}" data-t2="${f.t2}" data-device="${
        escape(f.device)
      }" data-uuid="" data-type="drop" data-y="${y1}" d="M${
        x(f.t1)
      } ${y1}m-4 -4l8 8m0 -8l-8 8"><title>${escape(title)}</title></path>`;
    }
    return `<line class="flow ${f.cls}${hot}" data-t1="${f.t1}" data-t2="${f.t2}" data-device="${
      escape(f.device)
    }" data-uuid="${escape(f.uuid)}" data-type="${escape(f.type)}" x1="${x(f.t1)}" x2="${
      x(f.t2)
    }" y1="${y1}" y2="${y2}" marker-end="url(#head-${f.cls})"><title>${
      escape(title)
    }</title></line>`;
  });
  const labels = lanes.map((lane, i) =>
    `<div class="label ${
      i < devices.length ? "device" : "relay"
    }" style="height:${laneHeightPx}px">${escape(lane)}</div>`
  );
  const colours: Record<string, string> = {
    chat: "#1f6feb",
    sync: "#2da44e",
    forward: "#d4760a",
    ack: "#8250df",
    hello: "#0a9396",
    pull: "#b8bec6",
    other: "#57606a",
  };
  const markers = Object.entries(colours).map(([cls, colour]) =>
    `<marker id="head-${cls}" viewBox="0 0 6 6" refX="6" refY="3" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0 0L6 3L0 6z" fill="${colour}"/></marker>`
  ).join("");
  const legend =
    Object.entries(colours).filter(([c]) => c !== "other").map(([cls, colour]) =>
      `<span class="key"><i style="background:${colour}"></i>${
        cls === "pull" ? "request/pull" : cls
      }</span>`
    ).join("") +
    `<span class="key"><i class="shade offline"></i>offline</span><span class="key"><i class="shade crash"></i>crashed</span><span class="key"><i class="shade partition"></i>partitioned</span>`;
  const title = report
    ? `${
      report.ok ? "PASS" : "FAIL"
    } ${report.scenario} — seed ${report.seed}, server ${report.server}`
    : scenario.name;
  const failed = (report?.expectations ?? []).filter((e) => !e.ok);
  const notes = [
    ...failed.map((e) =>
      `<div class="failnote"><b>${escape(e.name)}</b>: ${escape(e.detail)}</div>`
    ),
    failing !== ""
      ? `<div class="failnote">failing message <code>${failing}</code> drawn in red — <a href="#" id="only-fail">show only it</a></div>`
      : "",
    dropped > 0
      ? `<div class="note">${dropped} arrows or ticks left out (more than ${timelineElementsMax} elements)</div>`
      : "",
  ].join("");

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>${escape(title)}</title>
<style>
body{font:13px/1.4 system-ui,sans-serif;margin:0;color:#1f2328;background:#fff}
header{padding:8px 12px;border-bottom:1px solid #d0d7de;background:#f6f8fa}
h1{font-size:15px;margin:0 0 4px}
.controls{display:flex;gap:14px;align-items:center;flex-wrap:wrap;margin-top:4px}
.controls input[type=text]{width:260px}
.key{display:inline-flex;align-items:center;gap:4px;margin-right:8px}
.key i{display:inline-block;width:14px;height:8px}
.shade.offline,.span.offline{fill:#ffd8b5;background:#ffd8b5}
.shade.crash,.span.crash{fill:#ffc1c0;background:#ffc1c0}
.shade.partition,.span.partition{fill:#d8d2ff;background:#d8d2ff}
.span{opacity:.75}
.failnote{color:#cf222e;margin-top:2px;word-break:break-all}
.note{color:#57606a}
main{display:flex}
#labels{flex:none;border-right:1px solid #d0d7de;background:#fff}
.label{display:flex;align-items:center;padding:0 8px;white-space:nowrap;font-family:ui-monospace,monospace;font-size:12px}
.label.relay{font-weight:bold;background:#f6f8fa}
#scroll{overflow-x:auto;flex:1}
svg{display:block}
.lane line{stroke:#eaeef2;stroke-width:1}
.lane.relay line{stroke:#8c959f;stroke-width:2}
.flow{stroke-width:1.3}
.flow.chat{stroke:${colours.chat}}.flow.sync{stroke:${colours.sync}}.flow.forward{stroke:${colours.forward}}
.flow.ack{stroke:${colours.ack}}.flow.hello{stroke:${colours.hello}}.flow.other{stroke:${colours.other}}
.flow.pull{stroke:${colours.pull};stroke-width:1}
.flow.drop{stroke:#cf222e;stroke-width:2;fill:none}
.flow.fail{stroke:#cf222e;stroke-width:4}
.hidden{display:none}
#axis text{font-size:10px;fill:#57606a}
</style></head>
<body>
<header>
<h1>${escape(title)}</h1>
<div>${lanes.length} lanes (${devices.length} devices, ${scenario.servers.length} relays), ${
    kept.filter((f) => f.uuid !== "").length
  } message arrows, ${endMs} ms virtual</div>
${notes}
<div class="controls">
<label>zoom <input id="zoom" type="range" min="0" max="8" step="0.05" value="0"> <span id="zoomv">1×</span></label>
<label>filter <input id="filter" type="text" placeholder="user, user/device, uuid or type"></label>
<label><input id="pulls" type="checkbox" checked> requests</label>
<span>${legend}</span>
</div>
</header>
<main>
<div id="labels">${labels.join("")}</div>
<div id="scroll">
<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="${baseWidthPx}" height="${heightPx}">
<defs>${markers}</defs>
<g id="axis"></g>
<g id="lanes">${laneRows.join("")}</g>
<g id="spans">${spanRects.join("")}</g>
<g id="flows">${arrows.join("\n")}</g>
</svg>
</div>
</main>
<script>
(() => {
  const base = ${baseWidthPx}, end = ${endMs};
  const svg = document.getElementById("timeline");
  const zoom = document.getElementById("zoom"), filter = document.getElementById("filter");
  const pulls = document.getElementById("pulls");
  const items = [...svg.querySelectorAll("[data-t1]")];
  const lanes = [...svg.querySelectorAll(".lane line")];
  const axis = document.getElementById("axis"), axisY = ${laneHeightPx * lanes.length + 13};
  function ticks(s) {
    const steps = [100, 250, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 3e4, 6e4, 12e4, 3e5, 6e5, 18e5, 36e5];
    const step = steps.find((v) => v * s >= 90) ?? 36e5;
    let html = "";
    for (let t = 0; t <= end; t += step) {
      const label = step < 1e3 ? t + " ms" : t < 6e4 || step < 6e4 ? t / 1e3 + " s" : t / 6e4 + " min";
      html += '<text x="' + (t * s + 2) + '" y="' + axisY + '">' + label + "</text>";
    }
    axis.innerHTML = html;
  }
  function layout() {
    const factor = Math.pow(2, Number(zoom.value)), width = base * factor, s = width / end;
    ticks(s);
    document.getElementById("zoomv").textContent = factor.toFixed(1) + "×";
    svg.setAttribute("width", width);
    for (const l of lanes) l.setAttribute("x2", width);
    for (const el of items) {
      const t1 = Number(el.dataset.t1), t2 = Number(el.dataset.t2);
      if (el.tagName === "rect") { el.setAttribute("x", t1 * s); el.setAttribute("width", (t2 - t1) * s); }
      else if (el.tagName === "line") { el.setAttribute("x1", t1 * s); el.setAttribute("x2", t2 * s); }
      else el.setAttribute("d", "M" + t1 * s + " " + el.dataset.y + "m-4 -4l8 8m0 -8l-8 8");
    }
  }
  function applyFilter() {
    const q = filter.value.trim();
    for (const el of svg.querySelectorAll(".flow")) {
      const d = el.dataset.device, u = el.dataset.uuid, t = el.dataset.type;
      const match = q === "" || d === q || d.startsWith(q + "/") || (u !== "" && u.startsWith(q)) ||
        t === q || (q === "sync" && t.startsWith("sync:"));
      const pull = el.classList.contains("pull");
      el.classList.toggle("hidden", !match || (pull && !pulls.checked) || (pull && q !== "" && q === u));
    }
  }
  zoom.addEventListener("input", () => {
    const sc = document.getElementById("scroll"), mid = (sc.scrollLeft + sc.clientWidth / 2) / svg.width.baseVal.value;
    layout();
    sc.scrollLeft = mid * svg.width.baseVal.value - sc.clientWidth / 2;
  });
  document.getElementById("scroll").addEventListener("wheel", (e) => {
    if (!e.ctrlKey) return;
    e.preventDefault();
    zoom.value = Math.min(8, Math.max(0, Number(zoom.value) - Math.sign(e.deltaY) * 0.25));
    zoom.dispatchEvent(new Event("input"));
  }, { passive: false });
  filter.addEventListener("input", applyFilter);
  pulls.addEventListener("change", applyFilter);
  const only = document.getElementById("only-fail");
  if (only) only.addEventListener("click", (e) => { e.preventDefault(); filter.value = ${
    JSON.stringify(failing)
  }; applyFilter(); });
  layout();
})();
</script>
</body></html>
`;
}
