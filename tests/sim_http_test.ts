/**
 * `deno task sim --server http://…` against a real relay process
 * (`cli/server.ts --backend memory` on a free loopback port): the shipped
 * scenarios give the same `digest` as with the in-process fake relay.
 */
import assert from "node:assert/strict";
import { main, testIo } from "../sim/mod.ts";

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Starts a relay with a memory backend; a fresh one per run, since queues follow from the seed. */
async function startRelay(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-net=127.0.0.1",
      "--allow-sys=hostname",
      "cli/server.ts",
      "--backend",
      "memory",
      "--port",
      String(port),
      "--log-level",
      "warn",
      // Every simulated device reaches the relay from this one loopback address, in virtual time.
      "--requests-per-second-per-client-max",
      "1000000",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    await child.status;
  };
  for (let i = 0; i < 150; i++) {
    try {
      const response = await fetch(`${url}/health`);
      await response.body?.cancel();
      if (response.ok) return { url, stop };
    } catch { /* not listening yet */ }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await stop();
  throw new Error(`the relay on port ${port} did not start within 15 s`);
}

const io = testIo;

async function report(args: string[]): Promise<{ ok: boolean; digest: string; server: string }> {
  const sink = io();
  const status = await main([...args, "--json", "-", "--quiet"], sink);
  assert.equal(status, 0, sink.stdout + sink.stderr);
  return JSON.parse(sink.stdout);
}

for (const file of ["scenarios/quickstart.yaml", "scenarios/sync_duplicates.yaml"]) {
  Deno.test(`main() --server http:// gives ${file} the digest of the fake relay`, async () => {
    const relay = await startRelay();
    try {
      const http = await report([file, "--server", relay.url]);
      const fake = await report([file]);
      assert.equal(http.server, relay.url);
      assert.ok(http.ok && fake.ok);
      assert.equal(http.digest, fake.digest);
    } finally {
      await relay.stop();
    }
  });
}

Deno.test("main() --server http:// refuses a scenario with two relays (exit 2)", async () => {
  const sink = io();
  const status = await main(
    ["scenarios/offline_primary.yaml", "--server", "http://127.0.0.1:9"],
    sink,
  );
  assert.equal(status, 2);
  assert.match(sink.stderr, /declares 2 relays \(relay, relay2\)/);
});
