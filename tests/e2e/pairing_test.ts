/**
 * Invitations through a real relay's mailboxes, with real agent processes:
 * by code and by link (its QR code read back), each used once, both sides
 * showing the same safety code; and every bad code or link refused with
 * exit 6 (or 2 for usage), one line on stderr, and nothing changed.
 */
import assert from "node:assert/strict";
import { decodeQR } from "qr/decode.js";
import { type ContactView, EXIT } from "../../agent/mod.ts";
import {
  assertOneLine,
  CODE_LINE,
  Procs,
  SAFETY_CODE_LINE,
  WAITING_COMMAND_MS_MAX,
} from "./_harness.ts";

/** The line `invite --link` prints; group 1 is the link. */
const LINK_LINE = /^link: (meow:invite\?\S+)$/m;
/** What a waiting `invite` prints once its code or link (and QR code) is out. */
const WAITING = /waiting for your contact to accept/;
/** Pixels per QR module, and the light margin around the code, when rendering it to decode. */
const QR_MODULE_PX = 4;
const QR_MARGIN_PX = 16;

const waits = { timeoutMs: WAITING_COMMAND_MS_MAX };

/**
 * Reads the QR code `encodeQR(text, "ascii")` printed in `output` back to
 * its text: each character holds two modules, one above the other (a space
 * is two dark ones), rendered here to a black-and-white RGBA image for the
 * `qr` decoder.
 */
function readAsciiQr(output: string): string {
  const rows = output.split("\n").filter((line) => /^[█▀▄ ]+$/.test(line));
  assert.ok(rows.length > 10, `a QR code in:\n${output}`);
  const width = [...rows[0]].length;
  const dark: boolean[][] = [];
  for (const row of rows) {
    const chars = [...row];
    assert.equal(chars.length, width, "every QR row is as wide as the first");
    dark.push(chars.map((c) => c === " " || c === "▄"), chars.map((c) => c === " " || c === "▀"));
  }
  assert.ok(dark.length >= width, `a square QR code (${width} wide) in:\n${output}`);
  dark.length = width; // an odd-sized code pads its last character's lower half
  const size = width * QR_MODULE_PX + 2 * QR_MARGIN_PX;
  const data = new Uint8Array(size * size * 4).fill(255);
  for (let y = 0; y < size - 2 * QR_MARGIN_PX; y++) {
    for (let x = 0; x < size - 2 * QR_MARGIN_PX; x++) {
      if (!dark[Math.floor(y / QR_MODULE_PX)][Math.floor(x / QR_MODULE_PX)]) continue;
      const i = ((y + QR_MARGIN_PX) * size + x + QR_MARGIN_PX) * 4;
      data.fill(0, i, i + 3);
    }
  }
  return decodeQR({ width: size, height: size, data });
}

/** The six digits of the `safety code:` line in `output`. */
function safetyCode(output: string): string {
  const code = output.match(SAFETY_CODE_LINE)?.[1];
  assert.ok(code, `a safety code in:\n${output}`);
  return code;
}

Deno.test("agent invite by code and by link: accepted once each, the same safety code on both sides", async () => {
  const procs = await Procs.create();
  try {
    const relay = await procs.relay("kv");
    const home = (name: string) => ["--home", `${procs.dir}/${name}`];
    await Promise.all(
      ["alice", "bob", "carol"].map((n) =>
        procs.ok([...home(n), "init", "--name", n, "--server", relay])
      ),
    );
    const contacts = (name: string) => procs.json<ContactView[]>([...home(name), "contacts"]);

    // By code, typed in lower case without dashes.
    const invite = procs.spawnAgent([...home("alice"), "invite"]);
    const code = (await invite.waitFor(CODE_LINE))[1];
    const typed = code.toLowerCase().replaceAll("-", "");
    const bob = await procs.ok([...home("bob"), "accept", typed], waits);
    const invited = await invite.done;
    assert.equal(invited.code, 0, invited.stderr);
    assert.equal(safetyCode(invited.stdout), safetyCode(bob), "both sides show the same code");

    // The code was used: a second accept finds nothing, and adds nothing.
    const again = await procs.agent([...home("carol"), "accept", code]);
    assertOneLine(again, EXIT.badCode, /no such code: used already, expired or mistyped/);
    assert.deepEqual(await contacts("carol"), []);

    // By link: its QR code on stderr reads back to the link on stdout.
    const linkInvite = procs.spawnAgent([...home("alice"), "invite", "--link"]);
    await linkInvite.waitFor(WAITING);
    const link = linkInvite.stdout.match(LINK_LINE)?.[1];
    assert.ok(link, `a link line:\n${linkInvite.stdout}`);
    assert.equal(readAsciiQr(linkInvite.stderr), link, "the QR code holds the link");
    const file = `${procs.dir}/invite.link`;
    await Deno.writeTextFile(file, `${link}\n`);
    const carol = await procs.ok([...home("carol"), "accept", "--in", file], waits);
    const linked = await linkInvite.done;
    assert.equal(linked.code, 0, linked.stderr);
    assert.equal(safetyCode(linked.stdout), safetyCode(carol));

    assert.deepEqual((await contacts("alice")).map((c) => c.name), ["bob", "carol"]);
    assert.deepEqual((await contacts("bob")).map((c) => c.name), ["alice"]);
    assert.deepEqual((await contacts("carol")).map((c) => c.name), ["alice"]);
  } finally {
    await procs.stopAll();
  }
});

Deno.test("agent pairing refuses bad codes and links: exit 6 or 2, one line, nothing changed", async () => {
  const procs = await Procs.create();
  try {
    const relay = await procs.relay("kv");
    const otherRelay = await procs.relay(`kv:${procs.dir}/other-relay.kv`);
    const home = (name: string) => ["--home", `${procs.dir}/${name}`];
    await Promise.all(
      ["alice", "bob"].map((n) => procs.ok([...home(n), "init", "--name", n, "--server", relay])),
    );
    const bob = (...args: string[]) => procs.agent([...home("bob"), ...args]);

    // Malformed: the parser says what is wrong, before any relay is asked.
    assertOneLine(
      await bob("accept", "meow:invite?r=x"),
      EXIT.badCode,
      /Cannot read the pairing link: the fields u, m, s missing/,
    );
    assertOneLine(
      await bob("accept", "K7M2-XQ4P-9R3"),
      EXIT.badCode,
      /Cannot read the pairing code: the code has 11 characters, expected 12/,
    );
    // Usage.
    assertOneLine(await bob("accept"), EXIT.usage, /give either a code, a link or --in <file>/);
    assertOneLine(
      await procs.agent([...home("alice"), "invite", "--no-wait"]),
      EXIT.usage,
      /--no-wait needs --link or --out/,
    );

    // A link written to an owner-only file (before the waiting invite below holds alice's
    // home), its secret altered by one character: the card does not open, and the mailbox is
    // closed, so the right link finds nothing afterwards.
    const file = `${procs.dir}/invite.link`;
    await procs.ok([...home("alice"), "invite", "--out", file, "--no-wait"]);
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600, "the link file is owner-only");
    const link = (await Deno.readTextFile(file)).trim();
    const at = link.indexOf("&s=") + 3 + 20;
    const altered = link.slice(0, at) + (link[at] === "A" ? "B" : "A") + link.slice(at + 1);
    assertOneLine(await bob("accept", altered), EXIT.badCode, /wrong code, or someone interfered/);
    assertOneLine(
      await bob("accept", "--in", file),
      EXIT.badCode,
      /no such code: used already, expired or mistyped/,
    );

    // A real code, tried on another relay: that relay has no such mailbox.
    const invite = procs.spawnAgent([...home("alice"), "invite"]);
    const code = (await invite.waitFor(CODE_LINE))[1];
    assertOneLine(
      await bob("accept", code, "--server", otherRelay),
      EXIT.badCode,
      /no such code: used already, expired or mistyped/,
    );
    // A failed `pair join` leaves no home behind, whether its code is unknown or malformed.
    const newHome = `${procs.dir}/new-device`;
    for (const given of [code, "meow:pair?r=x"]) {
      assertOneLine(
        await procs.agent(["--home", newHome, "pair", "join", given, "--server", otherRelay]),
        EXIT.badCode,
        /no such code|Cannot read the pairing link/,
      );
      await assert.rejects(Deno.stat(newHome), Deno.errors.NotFound, `${newHome} is left`);
    }
    assert.deepEqual(await procs.json<ContactView[]>([...home("bob"), "contacts"]), []);

    // None of it used up the code that is still waiting: on the right relay it works.
    const accepted = await procs.ok([...home("bob"), "accept", code], waits);
    const invited = await invite.done;
    assert.equal(invited.code, 0, invited.stderr);
    assert.equal(safetyCode(invited.stdout), safetyCode(accepted));
  } finally {
    await procs.stopAll();
  }
});
