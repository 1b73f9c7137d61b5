import assert from "node:assert/strict";
import { check, type CheckInput, latency } from "./checks.ts";
import { emptyRecording } from "./recording.ts";
import type { Expectation } from "./scenario_types.ts";
import type { DeviceState, MessageState } from "./state.ts";

/**
 * A crowd's end, built by hand: `users` users of two devices each, user i in a conversation
 * with user i + 1, `messages` chat messages spread over the conversations and held by every
 * device of both sides; device 1 of each user is the primary. Every read of a state's `user`
 * is counted in `reads.user`.
 */
function crowdEnd(users: number, messages: number): { input: CheckInput; reads: { user: number } } {
  const reads = { user: 0 };
  const recording = emptyRecording();
  const name = (i: number) => `u${(i + users) % users}`;
  const conversation = (i: number) => `c${(i + users) % users}`; // user i with user i + 1
  const states: DeviceState[] = [];
  for (let i = 0; i < users; i++) {
    for (const device of [1, 2]) {
      const user = name(i);
      const state: DeviceState = {
        ref: `${user}/d${device}`,
        user,
        paired: true,
        identityUid: `id-${user}`,
        profile: { nickname: user, status: "", avatars: 0 },
        servers: ["home"],
        contacts: [conversation(i - 1), conversation(i)].sort().map((uid) => ({
          uid,
          name: uid,
          blocked: false,
          visible: true,
          settings: "{}",
        })),
        deviceCount: 1,
        conversations: new Map([[conversation(i - 1), []], [conversation(i), []]]),
        quarantine: [],
        peerKeys: [],
        deviceUid: `${user}-d${device}`,
        primaries: new Map([
          [conversation(i - 1), `${user}-d1`],
          [conversation(i), `${user}-d1`],
        ]),
        sessions: new Map(
          device === 1
            ? [[conversation(i - 1), name(i - 1)], [conversation(i), name(i + 1)]].map((
              [uid, other],
            ) => [uid, {
              ratchet: true,
              myIdentity: `identity-${user}`,
              myLookup: `lookup-${user}`,
              contactIdentity: `identity-${other}`,
              contactLookup: `lookup-${other}`,
            }])
            : [],
        ),
      };
      Object.defineProperty(state, "user", {
        get: () => {
          reads.user++;
          return user;
        },
      });
      states.push(state);
    }
  }
  for (let m = 0; m < messages; m++) {
    const i = m % users;
    const device = 1 + (Math.floor(m / users) % 2);
    const uuid = `m${m}`;
    recording.sent.set(uuid, {
      uuid,
      from: `${name(i)}/d${device}`,
      fromUser: name(i),
      toUser: name(i + 1),
      peerUid: conversation(i),
      text: `text ${m}`,
      at: 1_000 + m,
      fromPrimary: device === 1,
    });
    recording.arrivals.set(uuid, new Map());
    for (
      const [index, outbound] of [[2 * i, true], [2 * i + 1, true], [
        2 * (i + 1) % (2 * users),
        false,
      ], [(2 * (i + 1) + 1) % (2 * users), false]] as const
    ) {
      const message: MessageState = {
        uuid,
        outbound,
        text: `text ${m}`,
        type: "chat",
        sent: 1_000 + m,
        received: outbound ? 0 : 1_100 + m,
        processed: 0,
        pendingForward: false,
        failedReason: "",
      };
      states[index].conversations.get(conversation(i))!.push(message);
      recording.arrivals.get(uuid)!.set(states[index].ref, 1_100 + m);
    }
  }
  const conversationUids = new Map<string, Set<string>>();
  for (let i = 0; i < users; i++) {
    const [a, b] = [name(i), name(i + 1)].sort();
    conversationUids.set(`${a}|${b}`, new Set([conversation(i)]));
  }
  return {
    input: {
      recording,
      states,
      pairedAt: new Map(states.map((s) => [s.ref, 0])),
      conversationUids,
      endMs: 100_000,
    },
    reads,
  };
}

Deno.test("checks over a crowd look at each device a bounded number of times per message, not at every device", () => {
  const users = 200;
  const messages = 800;
  const devices = 2 * users;
  const { input, reads } = crowdEnd(users, messages);
  const expectations: Expectation[] = [
    { name: "no_loss" },
    { name: "no_duplicates" },
    { name: "converged" },
    { name: "reachable" },
    { name: "contacts_blind" },
    { name: "forwarded" },
    { name: "history" },
    { name: "delivered_within", p99Ms: 1_000 },
  ];
  for (const expectation of expectations) {
    reads.user = 0;
    const result = check(expectation, input);
    assert.equal(result.ok, true, `${expectation.name}: ${result.detail}`);
    // A scan of every device for every message reads `user` devices × messages = 320,000 times.
    assert(
      reads.user <= 40 * (devices + messages),
      `${expectation.name} read a device's user ${reads.user} times for ${devices} devices and ${messages} messages`,
    );
  }
  reads.user = 0;
  assert.equal(latency(input).count, messages);
  assert(reads.user <= 40 * (devices + messages), `latency read users ${reads.user} times`);
});

Deno.test("no_loss over the indexed crowd still names the device that lacks a message", () => {
  const { input } = crowdEnd(20, 40);
  const lacking = input.states[7];
  const [peerUid, held] = [...lacking.conversations].find(([, list]) => list.length > 0)!;
  const dropped = held.shift()!;
  const result = check({ name: "no_loss" }, input);
  assert.equal(result.ok, false);
  assert.match(
    result.detail,
    new RegExp(`^${lacking.ref} lacks message ${dropped.uuid} .* ${peerUid}`),
  );
});
