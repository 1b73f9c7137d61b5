/**
 * The always-online device (deploy/agent.ts): the same kernel and production
 * plugins as the CLI agent, its store in Deno KV sealed under a key from a
 * passphrase, driven by cron ticks and control requests instead of a resident
 * process. Every tick does a bounded amount of work and every change commits
 * in its own transaction, so an isolate stopped at any moment loses nothing.
 *
 * **The control API** (`POST /control`, JSON `{"op": name, "args": {...}}`):
 * the operations of agent/operations.ts, plus `join` (pair this device with
 * the user's devices: `{code, server}` or `{link}`) and `poll` (a tick now).
 * Each request is authorised by `Authorization: Meow ts=…,nonce=…,mac=…`:
 * HMAC-SHA-256 under the control key (scrypt of the passphrase with a fixed
 * salt, {@linkcode controlKey}) over the time, the nonce, the method, the path
 * and the body's SHA-256; checked in constant time, within
 * {@linkcode CONTROL_SKEW_MS} of the clock, each nonce once. Failures are
 * rate-limited; the header is never logged. `GET /health` tells whether the
 * device is paired and when it last polled, nothing else.
 *
 * @module
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { scrypt } from "@noble/hashes/scrypt.js";
import { fromBase64Url, mac, SystemRandom, toBase64Url, verifyMac } from "../crypto/mod.ts";
import { Kernel, type LogLevel, MeowError, type Plugin } from "../kernel/mod.ts";
import type { JoinInput } from "../kernel/mod.ts";
import { type Clock, type Random, systemClock, type Transport } from "../ports/mod.ts";
import { productionPlugins } from "../plugins/mod.ts";
import { DEVICE_SYNC_API } from "../plugins/device_sync/mod.ts";
import { KvStore, xchachaCipher } from "../plugins/storage/mod.ts";
import { HttpTransport } from "../server/mod.ts";
import { Agent } from "../agent/mod.ts";
import { AgentError, EXIT } from "../agent/mod.ts";
import { homePaths } from "../agent/mod.ts";
import { isOpName, type OpInput, runOperation } from "../agent/mod.ts";
import { deriveKey, keyCheck, keyMatches, newKdfParams } from "../agent/mod.ts";
import type { KdfParams } from "../agent/mod.ts";
import { fetchServerCard } from "../agent/mod.ts";

/** The largest control request body, in bytes. */
export const CONTROL_BODY_BYTES_MAX = 256 * 1024;
/** How far a control request's time may be from the clock, in ms. */
export const CONTROL_SKEW_MS = 5 * 60_000;
/** Refused control requests one isolate takes per minute before it answers 429. */
export const CONTROL_FAILURES_PER_MINUTE_MAX = 10;
/** The work one tick does at most, in ms (well inside a request's or a cron run's limit). */
export const TICK_MS_MAX = 20_000;
/** scrypt cost of the store key of a new cloud device (Deploy isolates have little CPU). */
export const CLOUD_KDF_LOG_N = 15;

const CONTROL_SALT = new TextEncoder().encode("meowsync control key v1");
const CONFIG = ["meowsync-agent", "config"] as const;
const NONCES = ["meowsync-agent", "nonce"] as const;
const STORE_PREFIX = ["meowsync-agent", "store"];

/**
 * The control key of a passphrase: what a client MACs its requests with.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { controlKey } from "./cloud_agent.ts";
 * assert.equal(controlKey("pass", 10).length, 32);
 * ```
 */
export function controlKey(passphrase: string, logN = CLOUD_KDF_LOG_N): Uint8Array {
  return scrypt(passphrase.normalize("NFC"), CONTROL_SALT, { N: 2 ** logN, r: 8, p: 1, dkLen: 32 });
}

function signedText(ts: number, nonce: string, method: string, path: string, body: Uint8Array) {
  return new TextEncoder().encode(
    `${ts}\n${nonce}\n${method}\n${path}\n${toBase64Url(sha256(body))}`,
  );
}

/**
 * The `Authorization` header of a control request (what a client sends).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { controlAuthorization } from "./cloud_agent.ts";
 * const header = controlAuthorization(new Uint8Array(32), { ts: 1, nonce: "n", path: "/control", body: new Uint8Array() });
 * assert.match(header, /^Meow ts=1,nonce=n,mac=/);
 * ```
 */
export function controlAuthorization(
  key: Uint8Array,
  r: { ts: number; nonce: string; method?: string; path: string; body: Uint8Array },
): string {
  const tag = mac(key, signedText(r.ts, r.nonce, r.method ?? "POST", r.path, r.body));
  return `Meow ts=${r.ts},nonce=${r.nonce},mac=${toBase64Url(tag)}`;
}

/** What {@linkcode CloudAgent.open} needs. */
export interface CloudAgentOptions {
  /** The KV database path (undefined: the default database, Deploy's). */
  kvPath?: string;
  /** The passphrase the store key and the control key come from. */
  passphrase: string;
  /** This device's name among the user's devices. @default {"cloud"} */
  deviceName?: string;
  /** The transport to the relays. @default {new HttpTransport()} */
  transport?: Transport;
  /** The clock. @default {systemClock} */
  clock?: Clock;
  /** Randomness. @default {new SystemRandom()} */
  random?: Random;
  /** Structured log lines (never contents or keys). @default {console.log as JSON} */
  log?: (level: LogLevel, line: string) => void;
  /** scrypt cost of the keys (tests lower it). @default {CLOUD_KDF_LOG_N} */
  kdfLogN?: number;
}

/** The always-online device over one KV database. */
export class CloudAgent {
  readonly agent: Agent;
  readonly #kv: Deno.Kv;
  readonly #controlKey: Uint8Array;
  readonly #clock: Clock;
  readonly #deviceName: string;
  readonly #log: (level: LogLevel, line: string) => void;
  #failures: number[] = [];
  #ticking: Promise<unknown> = Promise.resolve();

  private constructor(
    agent: Agent,
    kv: Deno.Kv,
    key: Uint8Array,
    clock: Clock,
    deviceName: string,
    log: (level: LogLevel, line: string) => void,
  ) {
    this.agent = agent;
    this.#kv = kv;
    this.#controlKey = key;
    this.#clock = clock;
    this.#deviceName = deviceName;
    this.#log = log;
  }

  /**
   * Opens (or, on first boot, creates) the device's store in KV under the passphrase.
   *
   * @throws {AgentError} EXIT.passphrase when the passphrase is empty or does not open the store
   */
  static async open(options: CloudAgentOptions): Promise<CloudAgent> {
    if (options.passphrase === "") {
      throw new AgentError("MEOW_PASSPHRASE is empty", EXIT.passphrase);
    }
    const random = options.random ?? new SystemRandom();
    const clock = options.clock ?? systemClock;
    const log = options.log ?? ((level, line) => console.log(JSON.stringify({ level, line })));
    const logN = options.kdfLogN ?? CLOUD_KDF_LOG_N;
    const kv = await Deno.openKv(options.kvPath);
    try {
      let config = (await kv.get<{ kdf: KdfParams; check: string }>([...CONFIG])).value;
      let key: Uint8Array;
      if (config === null) {
        const kdf = newKdfParams(random, logN);
        key = deriveKey(options.passphrase, kdf);
        config = { kdf, check: keyCheck(key, random) };
        const done = await kv.atomic().check({ key: [...CONFIG], versionstamp: null })
          .set([...CONFIG], config).commit();
        if (!done.ok) {
          config = (await kv.get<{ kdf: KdfParams; check: string }>([...CONFIG])).value!;
        }
      }
      key = deriveKey(options.passphrase, config.kdf);
      if (!keyMatches(key, config.check)) {
        throw new AgentError("the passphrase does not open this device's store", EXIT.passphrase);
      }
      const store = await KvStore.open(options.kvPath, {
        prefix: STORE_PREFIX,
        cipher: xchachaCipher(key, random),
      });
      const transport = options.transport ?? new HttpTransport();
      const kernel = await Kernel.open({
        store,
        clock,
        random,
        transport,
        plugins: [...productionPlugins(), commitLogPlugin(log)],
        longPollMs: 0,
        log: (level, line) => log(level, line),
        name: "cloud",
      });
      const agent = Agent.wrap(kernel, transport, homePaths("/deno-kv"));
      return new CloudAgent(
        agent,
        kv,
        controlKey(options.passphrase, logN),
        clock,
        options.deviceName ?? "cloud",
        log,
      );
    } catch (e) {
      kv.close();
      throw e;
    }
  }

  /**
   * One bounded round of work: pull every queue until empty (or `budgetMs`
   * passes), process, send what is due. Each message commits on its own, so
   * a tick cut short anywhere loses nothing; the next tick goes on. Ticks
   * never overlap.
   */
  tick(
    by: "cron" | "control" = "control",
    budgetMs = TICK_MS_MAX,
  ): Promise<{ accepted: number; sent: number }> {
    const run = this.#ticking.then(async () => {
      // A device still joining has its device keys and relays: its pairing answer goes out here.
      if (!this.agent.kernel.hasIdentity()) return { accepted: 0, sent: 0 };
      this.#log("debug", `tick: started (${by})`);
      const signal = AbortSignal.timeout(budgetMs);
      let accepted = 0;
      let sent = 0;
      try {
        accepted = await this.agent.kernel.pollOnce(signal);
        sent = await this.agent.kernel.flushOutbox(signal);
      } catch (e) {
        if (!(e instanceof MeowError) && !(e instanceof Error && e.name === "TransportError")) {
          throw e;
        }
        this.#log("warn", `tick: ${e.message}`);
      }
      this.#log("info", `tick: ${accepted} accepted, ${sent} sent`);
      return { accepted, sent };
    });
    this.#ticking = run.catch(() => {});
    return run;
  }

  /** The HTTP handler: `GET /health`, `POST /control`. */
  async handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    if (req.method === "GET" && url.pathname === "/health") return this.#health();
    if (url.pathname !== "/control") return error(404, "unknown path", EXIT.usage);
    if (req.method !== "POST") return error(405, "POST only", EXIT.usage);
    const now = this.#clock.now();
    this.#failures = this.#failures.filter((t) => now - t < 60_000);
    if (this.#failures.length >= CONTROL_FAILURES_PER_MINUTE_MAX) {
      return error(429, "too many refused requests; try again in a minute", EXIT.busy);
    }
    const length = Number(req.headers.get("content-length") ?? "0");
    if (length > CONTROL_BODY_BYTES_MAX) return error(413, "request too large", EXIT.usage);
    const body = new Uint8Array(await req.arrayBuffer());
    if (body.length > CONTROL_BODY_BYTES_MAX) return error(413, "request too large", EXIT.usage);
    const refused = await this.#authorize(req, url.pathname, body, now);
    if (refused) {
      this.#failures.push(now);
      this.#log("warn", `control: refused a request: ${refused}`);
      return error(401, refused, EXIT.passphrase);
    }
    let op: string;
    let args: Record<string, unknown>;
    try {
      const parsed = JSON.parse(new TextDecoder().decode(body)) as {
        op?: unknown;
        args?: unknown;
      };
      op = String(parsed.op ?? "");
      args = (parsed.args ?? {}) as Record<string, unknown>;
    } catch {
      return error(400, "the body is not JSON", EXIT.usage);
    }
    try {
      const result = await this.#run(op, args);
      this.#log("info", `control: ${op} done`);
      return Response.json({ ok: true, result });
    } catch (e) {
      const err = e instanceof AgentError
        ? e
        : e instanceof MeowError || e instanceof TypeError
        ? new AgentError((e as Error).message, EXIT.usage)
        : undefined;
      if (!err) throw e;
      this.#log("info", `control: ${op} refused (exit ${err.exitCode})`);
      return error(400, err.message, err.exitCode);
    }
  }

  async #run(op: string, args: Record<string, unknown>): Promise<unknown> {
    if (op === "poll") return await this.tick();
    if (op === "join") return await this.#join(args);
    if (!isOpName(op)) throw new AgentError(`unknown operation "${op}"`, EXIT.usage);
    const kernel = this.agent.kernel;
    if (!kernel.hasIdentity() || kernel.identity().uid === "") {
      throw new AgentError(
        "this device is not paired yet: make the join control call with a code from `pair start` " +
          "on your device that holds the identity root (or set MEOW_PAIR_CODE and MEOW_RELAY)",
        EXIT.noIdentity,
      );
    }
    const result = await runOperation(this.agent, op, args as OpInput<typeof op>);
    await this.agent.kernel.flushOutbox().catch(() => 0);
    return result;
  }

  /** Pairs this device with the user's devices (a code from `pair start` on one of them). */
  async #join(args: Record<string, unknown>): Promise<{ joining: boolean }> {
    const kernel = this.agent.kernel;
    if (kernel.hasIdentity() && kernel.identity().uid !== "") {
      throw new AgentError("this device is paired already", EXIT.noIdentity);
    }
    let input: JoinInput;
    if (typeof args.link === "string") input = { link: args.link };
    else if (typeof args.code === "string" && typeof args.server === "string") {
      input = { code: args.code, server: await fetchServerCard(this.agent.transport, args.server) };
    } else throw new AgentError("join wants {code, server} or {link}", EXIT.usage);
    await kernel.api(DEVICE_SYNC_API).joinDevices(input, { deviceName: this.#deviceName });
    // The answer comes through the mailbox; the pairing completes in the ticks that follow.
    await this.tick();
    return { joining: true };
  }

  async #authorize(
    req: Request,
    path: string,
    body: Uint8Array,
    now: number,
  ): Promise<string | undefined> {
    const header = req.headers.get("authorization") ?? "";
    const m = /^Meow ts=(\d{1,16}),nonce=([A-Za-z0-9_-]{16,64}),mac=([A-Za-z0-9_-]{43})$/.exec(
      header,
    );
    if (!m) return "missing or malformed authorization";
    const ts = Number(m[1]);
    let tag: Uint8Array;
    try {
      tag = fromBase64Url(m[3]);
    } catch {
      return "missing or malformed authorization";
    }
    if (!verifyMac(this.#controlKey, signedText(ts, m[2], req.method, path, body), tag)) {
      return "wrong authorization";
    }
    if (Math.abs(now - ts) > CONTROL_SKEW_MS) return "the request's time is too far from now";
    const key = [...NONCES, m[2]];
    const fresh = await this.#kv.atomic().check({ key, versionstamp: null })
      .set(key, ts, { expireIn: 2 * CONTROL_SKEW_MS }).commit();
    if (!fresh.ok) return "a replayed request";
    return undefined;
  }

  #health(): Response {
    const kernel = this.agent.kernel;
    const paired = kernel.hasIdentity() && kernel.identity().uid !== "";
    return Response.json({
      ok: true,
      paired,
      lastPollAt: paired ? kernel.lastPollAt() : 0,
      outbox: kernel.outboxSize(),
    });
  }

  /** Closes the kernel and the KV database. */
  async close(): Promise<void> {
    await this.#ticking;
    await this.agent.kernel.close();
    this.#kv.close();
  }
}

/**
 * Logs each stored message after its commit, at `debug`, by origin only (no contents, no
 * names): what a run did, line by line, and where an interrupted one stopped.
 */
function commitLogPlugin(log: (level: LogLevel, line: string) => void): Plugin {
  return {
    name: "cloud_commit_log",
    on: {
      "message.stored"({ origin }, tx) {
        tx.afterCommit(() => log("debug", `committed a message (${origin})`));
      },
    },
  };
}

function error(status: number, message: string, exitCode: number): Response {
  return Response.json({ ok: false, error: message, exitCode }, { status });
}
