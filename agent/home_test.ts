import assert from "node:assert/strict";
import { HomeLock, homePaths, readControlAddress, writeControlAddress } from "./home.ts";

Deno.test("HomeLock.tryAcquire() lets one holder in and names its pid to the others", async () => {
  const paths = homePaths(await Deno.makeTempDir({ prefix: "meowsync-home-" }));
  try {
    const first = await HomeLock.tryAcquire(paths);
    assert.ok(first instanceof HomeLock);
    if (Deno.build.os !== "windows") {
      assert.equal((await Deno.stat(paths.lock)).mode! & 0o777, 0o600);
    }
    const second = await HomeLock.tryAcquire(paths);
    assert.deepEqual(second, { pid: Deno.pid });
    first.release();
    first.release();
    const third = await HomeLock.tryAcquire(paths);
    assert.ok(third instanceof HomeLock);
    third.release();
  } finally {
    await Deno.remove(paths.dir, { recursive: true });
  }
});

Deno.test("HomeLock is released by the OS when its holder is killed", async () => {
  const paths = homePaths(await Deno.makeTempDir({ prefix: "meowsync-home-" }));
  const holder = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `const f = await Deno.open(${
        JSON.stringify(paths.lock)
      }, { read: true, write: true, create: true });
       await f.lock(true); console.log("locked"); setInterval(() => {}, 1000);`,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
    assert.match((await reader.read()).value ?? "", /locked/);
    assert.ok(!((await HomeLock.tryAcquire(paths)) instanceof HomeLock));
    holder.kill("SIGKILL");
    await holder.status;
    reader.releaseLock();
    const lock = await HomeLock.tryAcquire(paths);
    assert.ok(lock instanceof HomeLock, "a killed holder leaves no stale lock");
    lock.release();
  } finally {
    try {
      holder.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await holder.status;
    await holder.stdout.cancel().catch(() => {});
    await Deno.remove(paths.dir, { recursive: true });
  }
});

Deno.test("writeControlAddress() and readControlAddress() round-trip; files are owner-only", async () => {
  const paths = homePaths(await Deno.makeTempDir({ prefix: "meowsync-home-" }));
  try {
    assert.equal(await readControlAddress(paths), undefined);
    await writeControlAddress(paths, { port: 4321, token: "t0k" });
    assert.deepEqual(await readControlAddress(paths), { port: 4321, token: "t0k" });
    if (Deno.build.os !== "windows") {
      for (const file of [paths.token, paths.port]) {
        assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600, file);
      }
    }
  } finally {
    await Deno.remove(paths.dir, { recursive: true });
  }
});
