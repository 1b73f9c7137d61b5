/**
 * Benchmarks of crypto/: each primitive, the ratchet (same chain and
 * with a DH step) and the whole outbound + inbound pipeline of a 256-byte user
 * message (PROTOCOL.md, "Sealing a user message"). At load it also times the
 * pipeline against the sum of the primitives it is made of, on the very same
 * inputs, and prints the ratio (target ≤ 1.25): the pipeline should cost no
 * more than its parts.
 *
 *   ./dev bench --allow-all bench/crypto_bench.ts
 *
 * @module
 */
import {
  concatBytes,
  generateEncryptionKeyPair,
  generateLookupKeyPair,
  generateSigningKeyPair,
  initRatchetInitiator,
  initRatchetResponder,
  open,
  ratchetDecrypt,
  ratchetEncrypt,
  type RatchetState,
  seal,
  SeededRandom,
  sign,
  symDecrypt,
  symEncrypt,
  verify,
} from "../crypto/mod.ts";

const MESSAGE_BYTES = 256;
/** Iterations per timing round of the ratio measurement. */
const RATIO_ITERATIONS = 400;
/** Rounds of the ratio measurement; the median round counts. */
const RATIO_ROUNDS = 7;

const random = new SeededRandom("crypto bench");
const plaintext = random.bytes(MESSAGE_BYTES);
const now = 1_700_000_000_000;

// Alice's keys for this peer, and Bob's (the contact's) public ones.
const aliceIdentity = generateSigningKeyPair(random);
const bobEncryption = generateEncryptionKeyPair(random);
const bobLookup = generateLookupKeyPair(random);
const symKey = random.bytes(32);
const destination = bobLookup.publicKey;

// A session already in its steady state: one round trip done.
const rootKey = random.bytes(32);
const ad = concatBytes(aliceIdentity.publicKey, random.bytes(32));
const bobRatchetPair = generateEncryptionKeyPair(random);
let alice: RatchetState = initRatchetInitiator({
  rootKey,
  remotePublicKey: bobRatchetPair.publicKey,
  ad,
  random,
});
let bob: RatchetState = initRatchetResponder({ rootKey, ownKeyPair: bobRatchetPair, ad });
{
  const first = ratchetEncrypt(alice, plaintext, { random, now });
  alice = first.state;
  bob = ratchetDecrypt(bob, first.header, first.ciphertext, { random, now }).state;
  const reply = ratchetEncrypt(bob, plaintext, { random, now });
  bob = reply.state;
  alice = ratchetDecrypt(alice, reply.header, reply.ciphertext, { random, now }).state;
}
// The states are values: every benchmark below reuses them without advancing them.
const aliceBeforeStep = alice; // her next message starts a new chain for Bob
const stepMessage = ratchetEncrypt(alice, plaintext, { random, now });
const bobAtStep = bob;
const bobInChain = ratchetDecrypt(bob, stepMessage.header, stepMessage.ciphertext, {
  random,
  now,
}).state;
const aliceInChain = stepMessage.state;
const chainMessage = ratchetEncrypt(aliceInChain, plaintext, { random, now });

// One packed message, layer by layer, for the single-primitive benchmarks.
const ratchetCiphertext = chainMessage.ciphertext;
const header = chainMessage.header;
const symBox = symEncrypt(symKey, ratchetCiphertext, random);
const payload = await seal(bobEncryption.publicKey, symBox, random);
const signed = concatBytes(destination, payload, header);
const signature = await sign(aliceIdentity.privateKey, signed);

interface Packed {
  destination: Uint8Array;
  payload: Uint8Array;
  signature: Uint8Array;
  header: Uint8Array;
}

async function outbound(): Promise<Packed> {
  const r = ratchetEncrypt(aliceInChain, plaintext, { random, now });
  const sym = symEncrypt(symKey, r.ciphertext, random);
  const payload = await seal(bobEncryption.publicKey, sym, random);
  const signature = await sign(
    aliceIdentity.privateKey,
    concatBytes(destination, payload, r.header),
  );
  return { destination, payload, signature, header: r.header };
}

async function inbound(packed: Packed): Promise<Uint8Array> {
  const signed = concatBytes(packed.destination, packed.payload, packed.header);
  if (!(await verify(aliceIdentity.publicKey, signed, packed.signature))) {
    throw new Error("bench: signature does not verify");
  }
  const sym = await open(bobEncryption.privateKey, packed.payload);
  const ratchetCiphertext = symDecrypt(symKey, sym);
  const r = ratchetDecrypt(bobInChain, packed.header, ratchetCiphertext, { random, now });
  return r.plaintext;
}

const primitives: Record<string, () => unknown> = {
  "ratchetEncrypt (same chain)": () => ratchetEncrypt(aliceInChain, plaintext, { random, now }),
  "symEncrypt": () => symEncrypt(symKey, ratchetCiphertext, random),
  "seal": () => seal(bobEncryption.publicKey, symBox, random),
  "sign": () => sign(aliceIdentity.privateKey, concatBytes(destination, payload, header)),
  "verify": () =>
    verify(aliceIdentity.publicKey, concatBytes(destination, payload, header), signature),
  "open": () => open(bobEncryption.privateKey, payload),
  "symDecrypt": () => symDecrypt(symKey, symBox),
  "ratchetDecrypt (same chain)": () =>
    ratchetDecrypt(bobInChain, header, ratchetCiphertext, { random, now }),
};

const pipeline = async (): Promise<void> => {
  await inbound(await outbound());
};

for (const [name, fn] of Object.entries(primitives)) {
  Deno.bench({ name, group: "primitives", fn: async () => void (await fn()) });
}
Deno.bench({
  name: "ratchetEncrypt (first of a new chain)",
  group: "ratchet",
  fn: () => void ratchetEncrypt(aliceBeforeStep, plaintext, { random, now }),
});
Deno.bench({
  name: "ratchetDecrypt (same chain)",
  group: "ratchet",
  baseline: true,
  fn: () => void ratchetDecrypt(bobInChain, header, ratchetCiphertext, { random, now }),
});
Deno.bench({
  name: "ratchetDecrypt (with a DH step)",
  group: "ratchet",
  fn: () =>
    void ratchetDecrypt(bobAtStep, stepMessage.header, stepMessage.ciphertext, { random, now }),
});
Deno.bench({
  name: "outbound (ratchet → sym → seal → sign)",
  group: "pipeline",
  fn: async () => void (await outbound()),
});
Deno.bench({
  name: "outbound + inbound, 256 B",
  group: "pipeline",
  baseline: true,
  fn: pipeline,
});

// --- pipeline / sum of primitives, timed by hand on the same inputs ---

async function timeEach(fn: () => unknown): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < RATIO_ITERATIONS; i++) await fn();
  return ((performance.now() - start) * 1000) / RATIO_ITERATIONS;
}

function median(values: number[]): number {
  const sorted = values.toSorted((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

// Warm up every path (JIT, key caches) before timing.
for (let i = 0; i < 200; i++) {
  await pipeline();
  for (const fn of Object.values(primitives)) await fn();
}
const samples: Record<string, number[]> = { pipeline: [] };
for (const name of Object.keys(primitives)) samples[name] = [];
for (let round = 0; round < RATIO_ROUNDS; round++) {
  samples.pipeline.push(await timeEach(pipeline));
  for (const [name, fn] of Object.entries(primitives)) samples[name].push(await timeEach(fn));
}
const perPrimitive = Object.keys(primitives).map((name) => [name, median(samples[name])] as const);
const sum = perPrimitive.reduce((total, [, us]) => total + us, 0);
const whole = median(samples.pipeline);
console.log(
  `\ncrypto pipeline, ${MESSAGE_BYTES}-byte message (median of ${RATIO_ROUNDS} rounds × ${RATIO_ITERATIONS}):`,
);
for (const [name, us] of perPrimitive) {
  console.log(`  ${name.padEnd(30)} ${us.toFixed(1).padStart(8)} µs`);
}
console.log(`  ${"sum of primitives".padEnd(30)} ${sum.toFixed(1).padStart(8)} µs`);
console.log(`  ${"pipeline (outbound + inbound)".padEnd(30)} ${whole.toFixed(1).padStart(8)} µs`);
console.log(`  ratio pipeline / sum of primitives = ${(whole / sum).toFixed(3)} (target ≤ 1.25)\n`);
