/**
 * The always-online device's control API as an attacker meets it: no, a wrong, a replayed or a
 * stale authorization, oversized and malformed bodies, unknown operations — each a JSON error;
 * `/health` tells nothing secret; a wrong passphrase does not open the store.
 */
import assert from "node:assert/strict";
import { SeededRandom, toBase64Url } from "../crypto/mod.ts";
import { AgentError, EXIT } from "../agent/errors.ts";
import {
  CloudAgent,
  CONTROL_BODY_BYTES_MAX,
  CONTROL_FAILURES_PER_MINUTE_MAX,
  controlAuthorization,
  controlKey,
} from "./cloud_agent.ts";

const PASS = "correct horse battery staple";
const LOG_N = 10;

async function open(kvPath: string, passphrase = PASS) {
  return await CloudAgent.open({
    kvPath,
    passphrase,
    kdfLogN: LOG_N,
    random: new SeededRandom(3),
    log: () => {},
  });
}

let nonces = 0;
function request(
  body: string,
  options: { key?: Uint8Array; ts?: number; nonce?: string; header?: string } = {},
): Request {
  const bytes = new TextEncoder().encode(body);
  const nonce = options.nonce ?? toBase64Url(new SeededRandom(++nonces).bytes(16));
  const header = options.header ?? controlAuthorization(options.key ?? controlKey(PASS, LOG_N), {
    ts: options.ts ?? Date.now(),
    nonce,
    path: "/control",
    body: bytes,
  });
  return new Request("http://cloud.test/control", {
    method: "POST",
    headers: { authorization: header },
    body: bytes,
  });
}

async function answer(res: Response): Promise<{ status: number; body: Record<string, unknown> }> {
  assert.equal(res.headers.get("content-type"), "application/json");
  return { status: res.status, body: await res.json() };
}

Deno.test("cloud control API: a missing, wrong, stale or replayed authorization is a JSON 401", async () => {
  const dir = await Deno.makeTempDir();
  const cloud = await open(`${dir}/cloud.kv`);
  try {
    const status = JSON.stringify({ op: "status" });
    const missing = await answer(await cloud.handle(request(status, { header: "" })));
    assert.deepEqual([missing.status, missing.body.ok], [401, false]);
    assert.match(String(missing.body.error), /missing or malformed/);
    const wrong = await answer(
      await cloud.handle(request(status, { key: controlKey("guess", LOG_N) })),
    );
    assert.deepEqual([wrong.status, wrong.body.error], [401, "wrong authorization"]);
    const stale = await answer(
      await cloud.handle(request(status, { ts: Date.now() - 10 * 60_000 })),
    );
    assert.match(String(stale.body.error), /too far from now/);
    // The same signed request twice: the second is a replay.
    const once = request(status, { nonce: "aaaaaaaaaaaaaaaaaaaaaa" });
    const again = request(status, { nonce: "aaaaaaaaaaaaaaaaaaaaaa" });
    const first = await answer(await cloud.handle(once));
    assert.equal(first.body.exitCode, EXIT.noIdentity, JSON.stringify(first.body)); // authorised
    const replay = await answer(await cloud.handle(again));
    assert.deepEqual([replay.status, replay.body.error], [401, "a replayed request"]);
    // A body changed after signing does not match its MAC.
    const signed = request(status);
    const tampered = new Request(signed.url, {
      method: "POST",
      headers: signed.headers,
      body: JSON.stringify({ op: "send", args: { contact: "bob", text: "hi" } }),
    });
    assert.equal((await answer(await cloud.handle(tampered))).body.error, "wrong authorization");
  } finally {
    await cloud.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cloud control API: oversized and malformed bodies, unknown operations and paths; refusals are rate-limited", async () => {
  const dir = await Deno.makeTempDir();
  const cloud = await open(`${dir}/cloud.kv`);
  try {
    const big = await answer(
      await cloud.handle(request("x".repeat(CONTROL_BODY_BYTES_MAX + 1))),
    );
    assert.deepEqual([big.status, big.body.error], [413, "request too large"]);
    const notJson = await answer(await cloud.handle(request("{op:")));
    assert.deepEqual([notJson.status, notJson.body.error], [400, "the body is not JSON"]);
    const unknown = await answer(await cloud.handle(request(JSON.stringify({ op: "format" }))));
    assert.equal(unknown.status, 400);
    assert.match(String(unknown.body.error), /unknown operation "format"/);
    const unpaired = await answer(await cloud.handle(request(JSON.stringify({ op: "contacts" }))));
    assert.deepEqual([unpaired.status, unpaired.body.exitCode], [400, 3]);
    assert.match(String(unpaired.body.error), /not paired yet: make the join control call/);
    const path = await answer(await cloud.handle(new Request("http://cloud.test/admin")));
    assert.equal(path.status, 404);
    for (let i = 0; i < CONTROL_FAILURES_PER_MINUTE_MAX; i++) {
      await cloud.handle(request("{}", { key: controlKey("guess", LOG_N) }));
    }
    const limited = await answer(await cloud.handle(request(JSON.stringify({ op: "status" }))));
    assert.equal(limited.status, 429);
  } finally {
    await cloud.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cloud /health says whether it is paired and when it polled, nothing secret; a wrong passphrase does not open it", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/cloud.kv`;
  const cloud = await open(path);
  const res = await cloud.handle(new Request("http://cloud.test/health"));
  const text = await res.text();
  assert.deepEqual(Object.keys(JSON.parse(text)).sort(), ["lastPollAt", "ok", "outbox", "paired"]);
  assert.deepEqual(JSON.parse(text), { ok: true, paired: false, lastPollAt: 0, outbox: 0 });
  assert.ok(!text.includes(PASS));
  await cloud.close();
  await assert.rejects(
    open(path, "not the passphrase"),
    (e) => e instanceof AgentError && e.exitCode === EXIT.passphrase,
  );
  await assert.rejects(open(path, ""), AgentError);
  (await open(path)).close();
  await Deno.remove(dir, { recursive: true });
});
