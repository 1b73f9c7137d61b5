import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { generateEncryptionKeyPair, SeededRandom } from "../kernel/crypto/mod.ts";
import { BadCiphertext, BadSignature, Malformed } from "../kernel/errors.ts";
import { ToServerMessageSchema } from "../proto/gen/meow_pb.ts";
import { openAnswer, sealRequest } from "./client.ts";
import { ServerCore } from "./core.ts";
import { MemoryBackend } from "./memory.ts";
import { ManualClock, TestDevice } from "./_testing.ts";

async function setup() {
  const clock = new ManualClock();
  const relay = (seed: number) =>
    ServerCore.create({ backend: new MemoryBackend(), clock, random: new SeededRandom(seed) });
  const real = await relay(1);
  const other = await relay(2);
  const device = new TestDevice(
    new SeededRandom(3),
    real.card(),
    (b) => real.handle(b),
    () => clock.now(),
  );
  const body = await sealRequest({
    server: real.card(),
    request: create(ToServerMessageSchema, { uuid: "x" }),
    deviceEncryption: device.encryption,
    deviceSigning: device.signing,
    random: device.random,
  });
  return { real, other, device, answer: await real.handle(body) };
}

Deno.test("openAnswer() opens an answer signed by the card's relay", async () => {
  const { real, device, answer } = await setup();
  const opened = await openAnswer({
    server: real.card(),
    body: answer,
    deviceEncryption: device.encryption,
  });
  assert.equal(opened.uuidAck, "x");
});

Deno.test("openAnswer() rejects an answer not signed by the card's relay", async () => {
  const { other, device, answer } = await setup();
  await assert.rejects(
    () => openAnswer({ server: other.card(), body: answer, deviceEncryption: device.encryption }),
    BadSignature,
  );
});

Deno.test("openAnswer() rejects an answer sealed to another device", async () => {
  const { real, answer } = await setup();
  const stranger = generateEncryptionKeyPair(new SeededRandom(9));
  await assert.rejects(
    () => openAnswer({ server: real.card(), body: answer, deviceEncryption: stranger }),
    BadCiphertext,
  );
});

Deno.test("openAnswer() rejects the empty answer and garbage as Malformed", async () => {
  const { real, device } = await setup();
  for (const body of [new Uint8Array(0), new Uint8Array([0xff, 0xff, 0xff])]) {
    await assert.rejects(
      () => openAnswer({ server: real.card(), body, deviceEncryption: device.encryption }),
      Malformed,
    );
  }
});
