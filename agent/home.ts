/**
 * A home: the directory that holds one device's state.
 *
 * - `agent.json` — the key-derivation parameters, the salt and the key check
 *   (no secret), and the plugin modules the home loads (`plugins`, optional);
 * - `device.kv` — the store (Deno KV, the default), every record sealed with
 *   the derived key; or `device.db` — the same in SQLite (`init --store sqlite`);
 * - `agent.lock` — held (an OS file lock) by the one process that runs a
 *   kernel on this home; it names that process's PID;
 * - `agent.port`, `agent.token` — while `run` runs: its control endpoint on
 *   127.0.0.1 and the token that authorizes a request to it.
 *
 * The home is created with mode 0700 and every file in it with 0600 (the
 * stores' side files `-wal` and `-shm` too): only its owner reads any of it.
 *
 * @module
 */
import { AgentError, EXIT } from "./errors.ts";
import type { KdfParams } from "./passphrase.ts";

/** The mode of every file in a home: read and write for its owner only. */
const OWNER_ONLY_FILE_MODE = 0o600;
/** The mode of a home directory a command creates: its owner's only. */
const OWNER_ONLY_DIR_MODE = 0o700;

/** The files of a home. */
export interface HomePaths {
  /** The home directory. */
  dir: string;
  /** `agent.json`: key derivation and key check. */
  config: string;
  /** `device.kv`: the Deno KV store. */
  kv: string;
  /** `device.db`: the SQLite store. */
  db: string;
  /** `agent.lock`: the kernel lock. */
  lock: string;
  /** `agent.port`: the running agent's control port. */
  port: string;
  /** `agent.token`: the running agent's control token. */
  token: string;
}

/**
 * The paths of the home in `dir`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { homePaths } from "./home.ts";
 * assert(homePaths("/tmp/alice").db === "/tmp/alice/device.db");
 * ```
 */
export function homePaths(dir: string): HomePaths {
  const base = dir.replace(/\/+$/, "") || "/";
  const file = (name: string) => `${base === "/" ? "" : base}/${name}`;
  return {
    dir: base,
    config: file("agent.json"),
    kv: file("device.kv"),
    db: file("device.db"),
    lock: file("agent.lock"),
    port: file("agent.port"),
    token: file("agent.token"),
  };
}

/**
 * The home when `--home` is not given: `$MEOW_HOME`, else
 * `$XDG_DATA_HOME/meowsync`, else `~/.local/share/meowsync`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultHome } from "./home.ts";
 * const env = (name: string) => ({ HOME: "/home/al" } as Record<string, string>)[name];
 * assert(defaultHome(env) === "/home/al/.local/share/meowsync");
 * ```
 */
export function defaultHome(env: (name: string) => string | undefined): string {
  const explicit = env("MEOW_HOME");
  if (explicit) return explicit;
  const xdg = env("XDG_DATA_HOME");
  if (xdg) return `${xdg.replace(/\/+$/, "")}/meowsync`;
  const home = env("HOME") ?? env("USERPROFILE");
  if (!home) {
    throw new AgentError("cannot find a home: set --home, MEOW_HOME or HOME", EXIT.usage);
  }
  return `${home.replace(/\/+$/, "")}/.local/share/meowsync`;
}

/** The store kinds a home can use. */
export const STORE_KINDS = ["kv", "sqlite"] as const;
/** Which database holds a home's store. */
export type StoreKind = typeof STORE_KINDS[number];

/** What `agent.json` holds. */
export interface HomeConfig {
  /** The format version. */
  version: 1;
  /** The store's database (absent in homes made before there was a choice: `sqlite`). */
  store?: StoreKind;
  /** How the store key is derived from the passphrase. */
  kdf: KdfParams;
  /** The key check: a constant sealed with the derived key (base64url). */
  check: string;
  /**
   * Plugin modules every command on this home loads, besides `--plugin` (paths relative to the
   * home; see docs/PLUGINS.md). Written by hand; absent: none.
   */
  plugins?: string[];
}

/**
 * Reads `agent.json`; undefined when the home has none (not set up).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { homePaths, readConfig } from "./home.ts";
 * assert(await readConfig(homePaths(await Deno.makeTempDir())) === undefined);
 * ```
 */
export async function readConfig(paths: HomePaths): Promise<HomeConfig | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(paths.config);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  try {
    const config = JSON.parse(text) as HomeConfig;
    if (
      config.version !== 1 || typeof config.check !== "string" || !config.kdf?.salt ||
      (config.store !== undefined && !STORE_KINDS.includes(config.store))
    ) {
      throw new Error("unknown format");
    }
    if (
      config.plugins !== undefined &&
      (!Array.isArray(config.plugins) ||
        !config.plugins.every((f) => typeof f === "string" && f !== ""))
    ) {
      throw new Error('"plugins" is not a list of file paths');
    }
    return config;
  } catch (e) {
    throw new AgentError(`cannot read ${paths.config}: ${(e as Error).message}`, EXIT.failure);
  }
}

/** Writes `agent.json` (readable by the owner only). */
export async function writeConfig(paths: HomePaths, config: HomeConfig): Promise<void> {
  await Deno.writeTextFile(paths.config, JSON.stringify(config, null, 2) + "\n", {
    mode: OWNER_ONLY_FILE_MODE,
  });
}

/** The process holding a home's lock, as far as it says. */
export interface LockHolder {
  /** Its PID, when the lock file names one. */
  pid?: number;
}

/**
 * The kernel lock of a home. The kernel caches peers (ratchets included) in
 * memory and writes them back, so two processes with a kernel on one home
 * would reuse message keys: exactly one process may hold this lock.
 *
 * It is an OS advisory lock (`flock`) on `agent.lock`, not a
 * create-if-absent file: the OS drops it when the holder dies, even by
 * SIGKILL, so there is no stale lock to detect and no PID that could have
 * been reused. The file names the holder's PID for error messages.
 */
export class HomeLock {
  readonly #file: Deno.FsFile;
  #released = false;

  private constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  /**
   * Takes the lock without waiting; resolves with the lock, or with what the
   * file says of its holder when another process has it.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HomeLock, homePaths } from "./home.ts";
   * const paths = homePaths(await Deno.makeTempDir());
   * const lock = await HomeLock.tryAcquire(paths);
   * assert(lock instanceof HomeLock);
   * if (lock instanceof HomeLock) lock.release();
   * ```
   */
  static async tryAcquire(paths: HomePaths): Promise<HomeLock | LockHolder> {
    await Deno.mkdir(paths.dir, { recursive: true, mode: OWNER_ONLY_DIR_MODE });
    const file = await Deno.open(paths.lock, {
      read: true,
      write: true,
      create: true,
      mode: OWNER_ONLY_FILE_MODE,
    });
    let locked = false;
    try {
      locked = await file.tryLock(true);
    } finally {
      if (!locked) file.close();
    }
    if (!locked) {
      const text = await Deno.readTextFile(paths.lock).catch(() => "");
      const pid = Number.parseInt(text.trim(), 10);
      return Number.isSafeInteger(pid) ? { pid } : {};
    }
    await file.truncate(0);
    await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
    return new HomeLock(file);
  }

  /** Releases the lock; releasing twice is harmless. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    try {
      this.#file.unlockSync();
    } finally {
      this.#file.close();
    }
  }
}

/** Where a running agent listens, and the token it wants. */
export interface ControlAddress {
  /** The port on 127.0.0.1. */
  port: number;
  /** The bearer token. */
  token: string;
}

/** Reads the control address a running agent wrote; undefined when there is none. */
export async function readControlAddress(paths: HomePaths): Promise<ControlAddress | undefined> {
  try {
    const port = Number.parseInt((await Deno.readTextFile(paths.port)).trim(), 10);
    const token = (await Deno.readTextFile(paths.token)).trim();
    if (!Number.isSafeInteger(port) || port <= 0 || token === "") return undefined;
    return { port, token };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Writes the control address (the token first, owner-only, so a port never lacks its token). */
export async function writeControlAddress(
  paths: HomePaths,
  address: ControlAddress,
): Promise<void> {
  await Deno.writeTextFile(paths.token, address.token + "\n", { mode: OWNER_ONLY_FILE_MODE });
  await Deno.writeTextFile(paths.port, `${address.port}\n`, { mode: OWNER_ONLY_FILE_MODE });
}

/** Removes the control files (a stale pair left by a killed agent, or at shutdown). */
export async function removeControlAddress(paths: HomePaths): Promise<void> {
  for (const path of [paths.port, paths.token]) {
    await Deno.remove(path).catch(() => {});
  }
}
