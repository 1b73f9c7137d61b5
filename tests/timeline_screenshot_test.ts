/**
 * The `--timeline` page of a shipped scenario, rendered by headless Chromium:
 * the screenshot is not blank and the DOM holds one lane per device and relay.
 * Skipped (with the reason) when /usr/bin/chromium is not installed
 * (`apt-get install -y chromium`).
 */
import assert from "node:assert/strict";
import { type CliIo, loadScenario, main } from "../sim/mod.ts";

const CHROMIUM = "/usr/bin/chromium";
const SCENARIO = "scenarios/sync_crash_restart.yaml";

function chromiumSkip(): string | undefined {
  try {
    Deno.statSync(CHROMIUM);
    return undefined;
  } catch {
    return `${CHROMIUM} is not installed (apt-get install -y chromium)`;
  }
}

const skip = chromiumSkip();
if (skip) console.warn(`timeline_screenshot_test: skipped: ${skip}`);

async function chromium(args: string[], dir: string): Promise<string> {
  const profile = await Deno.makeTempDir({ dir, prefix: "profile-" });
  const { code, stdout, stderr } = await new Deno.Command(CHROMIUM, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--user-data-dir=${profile}`,
      "--window-size=1400,900",
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  return new TextDecoder().decode(stdout);
}

/** Decodes an 8-bit RGB or RGBA PNG into its rows of pixels (enough for a screenshot). */
async function pngPixels(
  bytes: Uint8Array,
): Promise<{ width: number; height: number; rgba: Uint8Array; channels: number }> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let width = 0, height = 0, channels = 0;
  const idat: Uint8Array<ArrayBuffer>[] = [];
  for (let at = 8; at < bytes.length;) {
    const length = view.getUint32(at);
    const type = new TextDecoder().decode(bytes.subarray(at + 4, at + 8));
    const data = bytes.subarray(at + 8, at + 8 + length);
    if (type === "IHDR") {
      width = view.getUint32(at + 8);
      height = view.getUint32(at + 12);
      assert.equal(data[8], 8, "bit depth");
      channels = data[9] === 6 ? 4 : data[9] === 2 ? 3 : 0;
      assert.ok(channels > 0, `colour type ${data[9]}`);
    }
    if (type === "IDAT") idat.push(data.slice());
    at += 12 + length;
  }
  // "deflate" in the Compression Streams API is zlib-wrapped, as PNG's IDAT is.
  const inflated = new Uint8Array(
    await new Response(new Blob(idat).stream().pipeThrough(new DecompressionStream("deflate")))
      .arrayBuffer(),
  );
  const stride = width * channels;
  const out = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = inflated[y * (stride + 1)];
    const row = inflated.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? out[y * stride + x - channels] : 0;
      const b = y > 0 ? out[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? out[(y - 1) * stride + x - channels] : 0;
      let predictor = 0;
      if (filter === 1) predictor = a;
      else if (filter === 2) predictor = b;
      else if (filter === 3) predictor = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
        predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      out[y * stride + x] = (row[x] + predictor) & 0xff;
    }
  }
  return { width, height, rgba: out, channels };
}

Deno.test({
  name: "--timeline renders in headless Chromium with a lane per device and relay",
  ignore: skip !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meowsync-timeline-" });
    try {
      const html = `${dir}/timeline.html`;
      const sink: CliIo = {
        out() {},
        err() {},
        errIsTerminal: false,
        wallClock: () => 0,
        uniqueId: () => "test",
      };
      assert.equal(await main([SCENARIO, "--timeline", html, "--quiet"], sink), 0);

      const png = `${dir}/shot.png`;
      await chromium([`--screenshot=${png}`, `file://${html}`], dir);
      const { width, height, rgba, channels } = await pngPixels(await Deno.readFile(png));
      assert.equal(width, 1400);
      assert.equal(height, 900);
      const colours = new Set<number>();
      for (let i = 0; i < rgba.length; i += channels) {
        colours.add((rgba[i] << 16) | (rgba[i + 1] << 8) | rgba[i + 2]);
      }
      assert.ok(colours.size > 20, `${colours.size} distinct colours: the page looks blank`);

      const dom = await chromium(["--dump-dom", `file://${html}`], dir);
      const scenario = await loadScenario(SCENARIO);
      const lanes = [
        ...scenario.users.flatMap((u) => u.devices.map((d) => `${u.name}/${d}`)),
        ...scenario.servers,
      ];
      for (const lane of lanes) {
        assert.equal(dom.split(`data-lane="${lane}"`).length - 1, 1, `lane ${lane}`);
      }
      // The script ran: it drew the time axis.
      assert.match(dom, /<g id="axis"><text /);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
