/**
 * The scenario reader's steps (private to sim/): one `steps:` entry, its `at`
 * and its one action, read into a {@linkcode Step}.
 *
 * @module
 */
import { DURATION_EXPECTED } from "./duration.ts";
import {
  HISTORY_DEFAULT,
  HISTORY_MESSAGES_PER_CONVERSATION_MAX,
  type HistoryWindow,
} from "../plugins/device_sync/mod.ts";
import type {
  DeviceRef,
  InviteGroupStep,
  InviteStep,
  PairingVia,
  ProfileStep,
  Step,
  StepAction,
} from "./scenario_types.ts";
import {
  messagesPerStepMax,
  type ScenarioValues,
  show,
  suggest,
  userOf,
} from "./_scenario_values.ts";

/** The actions a step may hold, in the order messages list them. */
export const STEP_KINDS = [
  "pair",
  "invite",
  "offline",
  "online",
  "crash",
  "restart",
  "handover",
  "retire",
  "remove",
  "lose",
  "recover",
  "send",
  "profile",
  "rename",
  "read",
  "partition",
  "add_server",
  "chatter",
] as const;
type StepKind = typeof STEP_KINDS[number];

/** Reads `steps[index]`. */
export function readStep(r: ScenarioValues, raw: unknown, index: number): Step {
  const path = `steps[${index}]`;
  const all = [...STEP_KINDS, ...r.pluginStepNames()];
  const f = r.fields(raw, path, ["at", "may_fail", ...all]);
  const kinds = all.filter((k) => f[k] !== undefined);
  if (kinds.length !== 1) {
    r.fail({
      path,
      value: raw,
      problem: kinds.length === 0
        ? "the step has no action"
        : `the step has ${kinds.length} actions (${kinds.join(", ")})`,
      expected: `at and exactly one of ${all.join(", ")}`,
    });
  }
  if (f.at === undefined) {
    r.fail({
      path: `${path}.at`,
      value: undefined,
      problem: "missing",
      expected: `the time the step runs, ${DURATION_EXPECTED}`,
    });
  }
  const atMs = r.withinDuration(f.at, `${path}.at`, 0);
  if (f.may_fail !== undefined && typeof f.may_fail !== "boolean") {
    r.fail({
      path: `${path}.may_fail`,
      value: f.may_fail,
      problem: `${JSON.stringify(f.may_fail)} is not true or false`,
      expected: "may_fail: true (a device may refuse this step without failing the run)",
    });
  }
  const mayFail = f.may_fail === true ? { mayFail: true } : {};
  const plugin = r.pluginStep(kinds[0]);
  if (plugin) {
    const args = r.pluginFields(f[kinds[0]], `${path}.${kinds[0]}`, plugin.step.fields);
    return {
      atMs,
      index,
      ...mayFail,
      kind: "plugin",
      step: kinds[0],
      module: plugin.module.name,
      args,
    };
  }
  const action = readAction(r, kinds[0] as StepKind, f[kinds[0]], `${path}.${kinds[0]}`, atMs);
  return { atMs, index, ...mayFail, ...action };
}

/**
 * A pairing's history: a whole number of messages per conversation (0 for none), or a duration
 * (`30d`: that far back, at most the per-conversation ceiling); absent, the plugin's default.
 */
function readHistory(r: ScenarioValues, raw: unknown, path: string): HistoryWindow {
  if (raw === undefined) return { ...HISTORY_DEFAULT };
  if (typeof raw === "number") {
    const messagesMax = r.integer(raw, path, 0, HISTORY_MESSAGES_PER_CONVERSATION_MAX);
    return messagesMax === 0
      ? { windowMs: 0, messagesMax: 0 }
      : { windowMs: undefined, messagesMax };
  }
  if (typeof raw !== "string") {
    r.fail({
      path,
      value: raw,
      problem: `${JSON.stringify(raw)} is not a history window`,
      expected:
        `0 (none), messages per conversation (1..${HISTORY_MESSAGES_PER_CONVERSATION_MAX}) or a duration like 30d`,
    });
  }
  return {
    windowMs: r.duration(raw, path, { positive: true }),
    messagesMax: HISTORY_MESSAGES_PER_CONVERSATION_MAX,
  };
}

function readAction(
  r: ScenarioValues,
  kind: StepKind,
  raw: unknown,
  path: string,
  atMs: number,
): StepAction {
  switch (kind) {
    case "pair": {
      const f = r.fields(raw, path, ["user", "from", "to", "via", "history"]);
      const user = r.user(f.user, `${path}.user`);
      const from = r.deviceOf(user, f.from, `${path}.from`);
      const to = r.deviceOf(user, f.to, `${path}.to`);
      if (from === to) {
        r.fail({
          path: `${path}.to`,
          value: f.to,
          problem: `a device cannot pair with itself`,
          expected: `another device of ${user} than ${from}`,
        });
      }
      const via = readVia(r, f.via, `${path}.via`);
      return { kind, user, from, to, via, history: readHistory(r, f.history, `${path}.history`) };
    }
    case "invite":
      return readInvite(r, raw, path);
    case "handover": {
      const f = r.fields(raw, path, ["user", "peer", "to"]);
      const user = r.user(f.user, `${path}.user`);
      const to = r.deviceOf(user, f.to, `${path}.to`);
      const peer = r.peer(f.peer, `${path}.peer`, `${user}/${to}`, "handover");
      return { kind, user, peer, to };
    }
    case "recover": {
      const f = r.fields(raw, path, ["user", "device"]);
      const user = r.user(f.user, `${path}.user`);
      return { kind, user, device: r.deviceOf(user, f.device, `${path}.device`) };
    }
    case "remove": {
      const f = r.fields(raw, path, ["device", "by"]);
      const device = r.device(f.device, `${path}.device`);
      const by = r.device(f.by, `${path}.by`);
      if (userOf(by) !== userOf(device) || by === device) {
        r.fail({
          path: `${path}.by`,
          value: f.by,
          problem: by === device
            ? "a device cannot remove itself (retire it)"
            : `${by} is not a device of ${userOf(device)}`,
          expected: `another device of ${userOf(device)}`,
        });
      }
      return { kind, device, by };
    }
    case "offline":
    case "online":
    case "crash":
    case "restart":
    case "retire":
    case "lose":
      return { kind, device: r.device(raw, path) };
    case "send": {
      const f = r.fields(raw, path, ["from", "to", "text", "count", "every"]);
      const from = r.device(f.from, `${path}.from`);
      const to = r.peer(f.to, `${path}.to`, from, "send");
      const text = r.string(f.text, `${path}.text`);
      const count = f.count === undefined
        ? 1
        : r.integer(f.count, `${path}.count`, 1, messagesPerStepMax);
      const everyMs = f.every === undefined ? 0 : r.duration(f.every, `${path}.every`);
      r.endsWithin(atMs + (count - 1) * everyMs, `${path}.every`, f.every, "last message");
      return { kind, from, to, text, count, everyMs };
    }
    case "profile": {
      const f = r.fields(raw, path, ["device", "nickname", "status"]);
      const device = r.device(f.device, `${path}.device`);
      if (f.nickname === undefined && f.status === undefined) {
        r.fail({
          path,
          value: raw,
          problem: "nothing to change",
          expected: "nickname, status or both",
        });
      }
      const step: ProfileStep = { kind, device };
      if (f.nickname !== undefined) step.nickname = r.string(f.nickname, `${path}.nickname`);
      if (f.status !== undefined) step.status = r.string(f.status, `${path}.status`);
      return step;
    }
    case "rename": {
      const f = r.fields(raw, path, ["device", "peer", "name"]);
      const device = r.device(f.device, `${path}.device`);
      const peer = r.peer(f.peer, `${path}.peer`, device, "rename");
      return { kind, device, peer, name: r.string(f.name, `${path}.name`) };
    }
    case "read": {
      const f = r.fields(raw, path, ["device", "peer"]);
      const device = r.device(f.device, `${path}.device`);
      return { kind, device, peer: r.peer(f.peer, `${path}.peer`, device, "read") };
    }
    case "partition": {
      const f = r.fields(raw, path, ["devices", "for"]);
      const list = typeof f.devices === "string"
        ? [f.devices]
        : r.list(f.devices, `${path}.devices`, { nonEmpty: true });
      const devices = list.map((d, i) => r.device(d, `${path}.devices[${i}]`));
      const twice = devices.find((d, i) => devices.indexOf(d) !== i);
      if (twice !== undefined) {
        r.fail({
          path: `${path}.devices`,
          value: f.devices,
          problem: `"${twice}" is listed twice`,
          expected: "each device once",
        });
      }
      const forMs = r.duration(f.for, `${path}.for`, { positive: true });
      r.endsWithin(atMs + forMs, `${path}.for`, f.for, "partition");
      return { kind, devices, forMs };
    }
    case "add_server": {
      const f = r.fields(raw, path, ["device", "server"]);
      const device = r.device(f.device, `${path}.device`);
      const server = r.string(f.server, `${path}.server`, { nonEmpty: true });
      if (!r.servers.includes(server)) {
        r.fail({
          path: `${path}.server`,
          value: server,
          problem: `"${server}" is not one of the scenario's servers`,
          expected: `one of ${r.servers.join(", ")}`,
          hint: [`declare it: servers: [${[...r.servers, server].join(", ")}]`]
            .concat(suggest(server, r.servers) ?? []).join(", or "),
        });
      }
      return { kind, device, server };
    }
    case "chatter": {
      const f = r.fields(raw, path, ["users", "messages", "over"]);
      const users = r.group(f.users, `${path}.users`);
      const messages = r.integer(f.messages, `${path}.messages`, 1, messagesPerStepMax);
      const overMs = f.over === undefined ? 0 : r.duration(f.over, `${path}.over`);
      r.endsWithin(atMs + overMs, `${path}.over`, f.over, "chatter");
      return { kind, users, messages, overMs };
    }
  }
}

function readInvite(r: ScenarioValues, raw: unknown, path: string): InviteStep | InviteGroupStep {
  const f = r.fields(raw, path, ["from", "to", "peers", "via"]);
  const via = readVia(r, f.via, `${path}.via`);
  const groupForm = f.peers !== undefined ||
    (typeof f.from === "string" && r.groups.has(f.from));
  if (groupForm) {
    const from = r.group(f.from, `${path}.from`);
    const to = r.group(f.to, `${path}.to`);
    if (f.peers === undefined) {
      r.fail({
        path: `${path}.peers`,
        value: undefined,
        problem: "missing",
        expected: "how many random contacts each user of the group gets, e.g. peers: 5",
      });
    }
    const candidates = r.groups.get(to)!.users.length - (from === to ? 1 : 0);
    if (candidates < 1) {
      r.fail({
        path: `${path}.to`,
        value: to,
        problem: `group "${to}" has no other user to invite`,
        expected: "a group with at least 2 users",
      });
    }
    const peers = r.integer(f.peers, `${path}.peers`, 1, candidates);
    return { kind: "invite_group", from, to, peers, via };
  }
  const from = r.device(f.from, `${path}.from`);
  let to: DeviceRef;
  if (typeof f.to === "string" && !f.to.includes("/") && r.devices.has(f.to)) {
    // `to: bob` invites bob's identity, which lives on his first device.
    to = `${f.to}/${r.devices.get(f.to)![0]}`;
  } else {
    to = r.device(f.to, `${path}.to`, "a device (user/device) or a user name");
  }
  if (userOf(from) === userOf(to)) {
    r.fail({
      path: `${path}.to`,
      value: f.to,
      problem: `"${to}" belongs to the inviting user ${userOf(from)}`,
      expected: "a device of another user (pair devices of one user with a pair step)",
    });
  }
  return { kind: "invite", from, to, via };
}

function readVia(r: ScenarioValues, raw: unknown, path: string): PairingVia {
  if (raw === undefined) return "code";
  if (raw === "code" || raw === "link") return raw;
  r.fail({
    path,
    value: raw,
    problem: `${show(raw)} is not a way to hand a pairing over`,
    expected: "code (a short code typed by hand) or link (a link or QR code)",
  });
}
