/**
 * Making a new home (`init`, `pair join`): under the home lock, with its
 * config and passphrase key, and undone when the command fails before the
 * home is worth keeping — so the same --home works again.
 *
 * @module
 */
import { SystemRandom } from "../../crypto/mod.ts";
import { AgentError, EXIT } from "../errors.ts";
import { HomeLock, type HomePaths, readConfig, type StoreKind, writeConfig } from "../home.ts";
import { deriveKey, getPassphrase, keyCheck, newKdfParams } from "../passphrase.ts";
import type { Ctx } from "../session.ts";

/**
 * Runs `fn` on a new home (none there yet) under the home lock. When `fn`
 * fails before it calls `keep()`, the home is undone — its files, and its
 * directory when this command made it — so the same --home works again.
 */
export async function withNewHome(
  ctx: Ctx,
  fn: (keep: () => void) => Promise<void>,
): Promise<void> {
  const fresh = await Deno.stat(ctx.paths.dir).then(() => false, () => true);
  const lock = await HomeLock.tryAcquire(ctx.paths);
  if (!(lock instanceof HomeLock)) {
    throw new AgentError(
      `${ctx.paths.dir} is in use${lock.pid ? ` by pid ${lock.pid}` : ""}: ` +
        "it has an identity already (see `status`)",
      EXIT.noIdentity,
    );
  }
  try {
    await assertNewHome(ctx);
    let kept = false;
    try {
      await fn(() => kept = true);
    } catch (e) {
      if (!kept) await removeNewHome(ctx.paths, fresh);
      throw e;
    }
  } finally {
    lock.release();
  }
}

/**
 * Writes the new home's config (store kind, passphrase KDF of cost 2^`logN`
 * and key check) with a passphrase asked twice; resolves with the store key.
 */
export async function createHomeFiles(
  ctx: Ctx,
  logN: number,
  store: StoreKind,
): Promise<Uint8Array> {
  await assertNewHome(ctx);
  const random = new SystemRandom();
  const kdf = newKdfParams(random, logN);
  const passphrase = await getPassphrase({ env: ctx.io.env, ask: ctx.io.ask }, { confirm: true });
  await removeHomeFiles(ctx.paths); // a half-made home from an earlier failure
  const key = deriveKey(passphrase, kdf);
  await writeConfig(ctx.paths, { version: 1, store, kdf, check: keyCheck(key, random) });
  return key;
}

/** The host name, the default device name. */
export function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "device";
  }
}

async function assertNewHome(ctx: Ctx): Promise<void> {
  if (await readConfig(ctx.paths)) {
    throw new AgentError(
      `${ctx.paths.dir} has an identity already (see \`status\`); give another --home ` +
        "for another device",
      EXIT.noIdentity,
    );
  }
}

async function removeHomeFiles(paths: HomePaths): Promise<void> {
  const stores = [paths.db, paths.kv].flatMap((db) => [db, `${db}-wal`, `${db}-shm`]);
  for (const path of [paths.config, ...stores]) {
    await Deno.remove(path).catch(() => {});
  }
}

/** Undoes a home a failed command began; its directory too when `made` (if nothing else is in it). */
async function removeNewHome(paths: HomePaths, made: boolean): Promise<void> {
  await removeHomeFiles(paths);
  if (!made) return;
  await Deno.remove(paths.lock).catch(() => {});
  await Deno.remove(paths.dir).catch(() => {});
}
