/**
 * Runs one scenario with one seed and produces its report (SCENARIOS.md,
 * "Report"): expectations, stats, the `digest` of every device's final state
 * and the `traceHash` of the event trace.
 *
 * @module
 */
import { sha256 } from "@noble/hashes/sha2.js";
import type { CheckDevice, PluginInput, Store } from "../kernel/mod.ts";
import type { Weakening } from "./plugins.ts";
import type { Backend, ServerCore } from "../server/mod.ts";
import { check, type CheckInput, type ExpectationResult, latency } from "./checks.ts";
import type { Expectation, NetworkSpec, Scenario } from "./scenario_types.ts";
import { randomFloat, SeededRandom } from "../crypto/mod.ts";
import { Scheduler } from "./scheduler.ts";
import { canonical, type DeviceState, readState } from "./state.ts";
import { openStore, type StorageKind } from "./storage.ts";
import { VIRTUAL_EPOCH_MS } from "./virtual_clock.ts";
import { pairKey } from "./steps.ts";
import { World, type WorldOptions } from "./world.ts";

/** The report of one run. */
export interface Report {
  scenario: string;
  seed: number;
  server: string;
  ok: boolean;
  expectations: ExpectationResult[];
  stats: {
    virtualMs: number;
    wallMs: number;
    events: number;
    users: number;
    devices: number;
    messagesSent: number;
    syncPayloads: number;
    forwards: number;
    bytesToServer: number;
    bytesFromServer: number;
    latencyMs: { p50: number; p99: number; max: number };
    /** Received messages put in a quarantine (could not be opened), over all devices. */
    quarantined: number;
    /** Of those, copies the network corrupted on purpose (`network: { corrupt }`). */
    corrupted: number;
  };
  digest: string;
  traceHash: string;
  /** Steps the devices refused (at most 20 listed), e.g. a send before its pairing completed. */
  refusedSteps: { at: number; step: string; error: string; mayFail?: boolean }[];
  /** The command line that replays this run. */
  replay: string;
  /**
   * The plugin modules of the run and what each adds to scenarios: meowsync's message plugins,
   * then those the scenario's `plugins:` or `--plugin` loaded (`loaded: true`).
   */
  plugins: { name: string; loaded: boolean; steps: string[]; expectations: string[] }[];
}

/** Options of {@linkcode runScenario}. */
export interface RunOptions {
  /** Plugin files given with `--plugin` (for the replay command; the scenario holds the modules). */
  plugins?: readonly string[];
  /** @default the file's seed, else 1 */
  seed?: number;
  /** `fake`, `redis[://host:port]`. @default the file's server, else "fake" */
  server?: string;
  /** @default "memory" */
  storage?: StorageKind;
  /** The scenario file, for the replay command. */
  file?: string;
  /** Gets every trace line (JSON-able). */
  trace?: (line: Record<string, unknown>) => void;
  /** Called now and then with virtual progress. */
  progress?: (virtualMs: number, durationMs: number) => void;
  /** Extra plugins per device: tests plant bugs with them. */
  extraPlugins?: (ref: string) => PluginInput[];
  /** Mechanisms switched off in every device's production plugins: tests show their worth with it. */
  weakening?: Weakening;
  /** The pairing protocol every device runs: tests plant a weakened one with it. @default the real one */
  pairingProtocol?: WorldOptions["pairingProtocol"];
  /** How every device seals user messages: only tests set it (padding off). @default the kernel's */
  sealing?: WorldOptions["sealing"];
  /** Opens the backend of a relay for a non-fake server kind. */
  backend?: (name: string) => Promise<Backend>;
  /** Draw the network from the seed within the file's ranges (see {@linkcode variedNetwork}). */
  varyNetwork?: boolean;
  /** Wall-clock reader for `stats.wallMs` (the simulation itself never reads it). @default () => 0 */
  wallClock?: () => number;
  /** Opens each relay outside the process (`http://` servers); see `WorldOptions.relay`. */
  relay?: (name: string) => Promise<ServerCore>;
  /** The virtual clock's time at scheduler time 0 (`digest` is relative to it). @default VIRTUAL_EPOCH_MS */
  epochMs?: number;
  /** Told what each relay saw: every unsealed request (a ToServerMessage), every message stored. */
  relayObserved?: WorldOptions["relayObserved"];
}

const encoder = new TextEncoder();

/** The trace is hashed in chunks of about this many characters. */
const TRACE_CHUNK_CHARS = 1 << 16;

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The command that replays a run. */
export function replayCommand(
  file: string,
  seed: number,
  server: string,
  storage: string,
  varyNetwork = false,
  plugins: readonly string[] = [],
): string {
  let command = `deno task sim ${file} --seed ${seed}`;
  for (const plugin of plugins) command += ` --plugin ${plugin}`;
  if (server !== "fake") command += ` --server ${server}`;
  if (storage !== "memory") command += ` --storage ${storage}`;
  if (varyNetwork) command += " --vary-network";
  return command;
}

/**
 * The network a seed runs under with `--vary-network`: each parameter drawn
 * from the seed within the scenario's range — latency max in [min, max],
 * reorder, duplicate and drop in [0, the file's value] — so a swarm explores
 * gentler and harsher networks, and `--seed N --vary-network` replays one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { variedNetwork } from "./run.ts";
 * const spec = { latencyMs: { min: 20, max: 200 }, reorder: 0.2, duplicate: 0.1, drop: 0, corrupt: 0 };
 * const varied = variedNetwork(spec, 7);
 * assert(varied.latencyMs.max <= 200 && varied.reorder <= 0.2 && varied.drop === 0);
 * ```
 */
export function variedNetwork(network: NetworkSpec, seed: number): NetworkSpec {
  const random = new SeededRandom(seed).fork("network-variant");
  const { min, max } = network.latencyMs;
  return {
    latencyMs: { min, max: min + Math.round(randomFloat(random) * (max - min)) },
    reorder: randomFloat(random) * network.reorder,
    duplicate: randomFloat(random) * network.duplicate,
    drop: randomFloat(random) * network.drop,
    // Kept as written (and drawn last, if ever varied): a scenario's corruption is what it shows.
    corrupt: network.corrupt,
  };
}

/**
 * Runs `scenario` and returns its report.
 *
 * @example
 * ```ts ignore
 * const report = await runScenario(await loadScenario("scenarios/quickstart.yaml"), { seed: 1 });
 * console.log(report.ok, report.digest);
 * ```
 */
export async function runScenario(scenario: Scenario, options: RunOptions = {}): Promise<Report> {
  const wall = options.wallClock ?? (() => 0);
  const started = wall();
  const seed = options.seed ?? scenario.seed ?? 1;
  if (options.varyNetwork) {
    scenario = { ...scenario, network: variedNetwork(scenario.network, seed) };
  }
  const server = options.server ?? scenario.server ?? "fake";
  const storage = options.storage ?? "memory";
  const traceHash = sha256.create();
  // Lines are hashed in chunks of about TRACE_CHUNK_CHARS (the hash of the whole is the same):
  // one update per trace line costs more than the hashing itself.
  let traceText = "";
  const flushTrace = () => {
    if (traceText !== "") traceHash.update(encoder.encode(traceText));
    traceText = "";
  };
  let now = () => 0;
  const trace = (record: Record<string, unknown>) => {
    const line = "t" in record ? record : { t: now(), ...record };
    traceText += JSON.stringify(line) + "\n";
    if (traceText.length >= TRACE_CHUNK_CHARS) flushTrace();
    options.trace?.(line);
  };
  let lastProgress = 0;
  const scheduler = new Scheduler({
    onEvent: (e) => {
      trace({ t: e.atMs, ev: e.label });
      if (options.progress && e.atMs - lastProgress >= 1000) {
        lastProgress = e.atMs;
        options.progress(e.atMs, scenario.durationMs);
      }
    },
  });
  now = () => scheduler.now;
  const folder = storage === "memory"
    ? undefined
    : await Deno.makeTempDir({ prefix: "meowsync-sim-" });
  const world = await World.create({
    scenario,
    seed,
    scheduler,
    storage,
    folder,
    extraPlugins: options.extraPlugins,
    weakening: options.weakening,
    pairingProtocol: options.pairingProtocol,
    sealing: options.sealing,
    backend: options.backend,
    trace,
    relay: options.relay,
    epochMs: options.epochMs,
    relayObserved: options.relayObserved,
  });
  try {
    world.scheduleSteps();
    world.startAll();
    // The last moment a step does anything: repeated sends and chatter run past their `at`.
    const lastStepMs = Math.max(
      0,
      ...scenario.steps.map((step) =>
        step.kind === "send"
          ? step.atMs + (step.count - 1) * step.everyMs
          : step.kind === "chatter"
          ? step.atMs + step.overMs
          : step.kind === "partition"
          ? step.atMs + step.forMs
          : step.atMs
      ),
    );
    let nextIdleCheck = 0;
    await scheduler.runUntil(scenario.durationMs, {
      idle: () => {
        if (scheduler.now < lastStepMs || scheduler.now < nextIdleCheck) return false;
        nextIdleCheck = scheduler.now + Math.max(100, Math.floor(scenario.pollIntervalMs / 4));
        return world.quiescent();
      },
    });
    const endMs = scheduler.now;
    world.closeDowntime();
    await world.stopAll();
    trace({ kind: "end", t: endMs });

    const states: DeviceState[] = [];
    for (const device of world.devices.values()) {
      if (world.recording.lost.has(device.ref)) continue; // its stores were destroyed
      let store = device.store!;
      if (device.crashed) {
        store = await openStore(storage, {
          folder,
          ref: device.ref,
          reopen: store,
          track: (p) => scheduler.track(p),
        });
        device.store = store;
        device.crashed = false;
      }
      states.push(await readState(device.ref, store));
    }
    const conversationUids = new Map<string, Set<string>>();
    for (const [key, uids] of world.conversationsAll) conversationUids.set(key, new Set(uids));
    // Each device's contacts join their conversation (a lookup per contact: a crowd of
    // 10,000 devices has as many conversations).
    for (const s of states) {
      for (const c of s.contacts) {
        const other = world.contactOf(s.ref, c.uid);
        if (other !== "") conversationUids.get(pairKey(s.user, other))?.add(c.uid);
      }
    }
    const input: CheckInput = {
      recording: world.recording,
      states,
      pairedAt: new Map([...world.devices.values()].map((d) => [d.ref, d.pairedAt])),
      conversationUids,
      endMs,
    };
    const expectations: ExpectationResult[] = [];
    // Unless the scenario says how many, no step may be refused: a mistyped one fails the run.
    const implicit = scenario.expect.some((e) => e.name === "refused")
      ? []
      : [{ name: "refused" as const, steps: 0 }];
    for (const e of [...scenario.expect, ...implicit]) {
      expectations.push(
        e.name === "plugin"
          ? await checkPlugin(e, scenario, world, storesOf(world))
          : check(e, input),
      );
    }
    const replay = replayCommand(
      options.file ?? scenario.source,
      seed,
      server,
      storage,
      options.varyNetwork,
      options.plugins,
    );
    for (const e of expectations) if (!e.ok) e.detail += ` — replay: ${replay}`;
    flushTrace();
    const digest = sha256.create();
    for (const s of [...states].sort((a, b) => (a.ref < b.ref ? -1 : 1))) {
      digest.update(encoder.encode(canonical(s, options.epochMs ?? VIRTUAL_EPOCH_MS) + "\n"));
    }
    const l = latency(input);
    let bytesToServer = 0;
    let bytesFromServer = 0;
    for (const d of world.devices.values()) {
      bytesToServer += d.transport.stats.bytesToServer;
      bytesFromServer += d.transport.stats.bytesFromServer;
    }
    return {
      scenario: scenario.name,
      seed,
      server,
      ok: expectations.every((e) => e.ok),
      expectations,
      stats: {
        virtualMs: endMs,
        wallMs: Math.round(wall() - started),
        events: scheduler.eventsRun,
        users: scenario.users.length,
        devices: world.devices.size,
        messagesSent: world.recording.sent.size,
        syncPayloads: world.recording.counters.syncPayloads,
        forwards: world.recording.counters.forwards,
        bytesToServer,
        bytesFromServer,
        latencyMs: { p50: l.p50, p99: l.p99, max: l.max },
        quarantined: world.recording.rejections.filter((r) => r.quarantined).length,
        corrupted: world.recording.corrupted.size,
      },
      refusedSteps: world.recording.refused.slice(0, 20),
      digest: hex(digest.digest()),
      traceHash: hex(traceHash.digest()),
      replay,
      plugins: scenario.modules.map((m) => ({
        name: m.name,
        loaded: scenario.extraModules.includes(m),
        steps: Object.keys(m.steps ?? {}),
        expectations: Object.keys(m.expectations ?? {}),
      })),
    };
  } finally {
    await world.close();
    if (folder) await Deno.remove(folder, { recursive: true }).catch(() => {});
  }
}

/** A one-screen human summary of a report. */
export function summary(report: Report): string {
  const s = report.stats;
  const lines = [
    `${
      report.ok ? "PASS" : "FAIL"
    } ${report.scenario} (seed ${report.seed}, server ${report.server})`,
    `  ${s.users} users, ${s.devices} devices, ${s.messagesSent} messages, ${s.syncPayloads} sync payloads, ${s.forwards} forwards`,
    `  virtual ${(s.virtualMs / 1000).toFixed(1)} s in ${
      (s.wallMs / 1000).toFixed(2)
    } s wall, ${s.events} events`,
    `  latency p50 ${s.latencyMs.p50} ms, p99 ${s.latencyMs.p99} ms, max ${s.latencyMs.max} ms; ` +
    `${s.bytesToServer} B to relays, ${s.bytesFromServer} B back`,
  ];
  const loaded = (report.plugins ?? []).filter((p) => p.loaded);
  if (loaded.length > 0) {
    lines.push(
      `  plugins: ${
        loaded.map((p) =>
          `${p.name} (steps: ${p.steps.join(", ") || "none"}; expectations: ${
            p.expectations.join(", ") || "none"
          })`
        ).join("; ")
      }`,
    );
  }
  if (s.quarantined > 0 || s.corrupted > 0) {
    lines.push(
      `  ${s.quarantined} received message(s) quarantined; ${s.corrupted} deliberately corrupted on the way`,
    );
  }
  const refused = report.refusedSteps;
  if (refused.length > 0) {
    const allowed = refused.filter((r) => r.mayFail).length;
    lines.push(
      `  ${refused.length}${refused.length === 20 ? "+" : ""} step(s) refused` +
        `${
          allowed > 0 ? ` (${allowed}${refused.length === 20 ? "+" : ""} may_fail)` : ""
        }; first at ` +
        `${(refused[0].at / 1000).toFixed(1)} s: ${refused[0].step}: ${refused[0].error}`,
    );
  }
  for (const e of report.expectations) {
    lines.push(`  ${e.ok ? "ok  " : "FAIL"} ${e.name}${e.detail ? `: ${e.detail}` : ""}`);
  }
  lines.push(`  digest ${report.digest.slice(0, 16)}…  trace ${report.traceHash.slice(0, 16)}…`);
  if (!report.ok) lines.push(`  replay: ${report.replay}`);
  return lines.join("\n");
}

void pairKey;

/** The stores of the devices that ended the run (lost ones excluded), by ref. */
function storesOf(world: World): Map<string, { user: string; store: Store }> {
  const out = new Map<string, { user: string; store: Store }>();
  for (const device of world.devices.values()) {
    if (world.recording.lost.has(device.ref) || !device.store) continue;
    out.set(device.ref, { user: device.user, store: device.store });
  }
  return out;
}

/** Runs a plugin module's expectation over the devices' stores. */
async function checkPlugin(
  e: Extract<Expectation, { name: "plugin" }>,
  scenario: Scenario,
  world: World,
  stores: Map<string, { user: string; store: Store }>,
): Promise<ExpectationResult> {
  const module = scenario.modules.find((m) => m.name === e.module);
  const extension = module?.expectations?.[e.expectation];
  if (!extension) return { name: e.expectation, ok: false, detail: `no module adds it` };
  const decode = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes));
  const devices: CheckDevice[] = [...stores].map(([ref, { user, store }]) => ({
    ref,
    user,
    data: (namespace: string) => ({
      get: async <T>(key: string) => {
        const bytes = await store.getPluginRecord(namespace, key);
        return bytes && decode(bytes) as T;
      },
      list: async <T>(prefix?: string) =>
        (await store.listPluginRecords(namespace, prefix)).map((r) => ({
          key: r.key,
          value: decode(r.value) as T,
        })),
    }),
    contactOf: (peerUid: string) => world.contactOf(ref, peerUid),
    messages: (peerUid: string) => store.listMessages(peerUid),
  }));
  try {
    const outcome = await extension.check(e.args, { devices });
    return { name: e.expectation, ok: outcome.ok, detail: outcome.detail };
  } catch (error) {
    return { name: e.expectation, ok: false, detail: `it threw: ${(error as Error).message}` };
  }
}
