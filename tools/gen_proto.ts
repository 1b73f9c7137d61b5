/**
 * `deno task proto`: regenerates proto/gen/ from proto/meow.proto with the
 * pinned buf and protoc-gen-es from tools/ (on PATH through ./dev).
 *
 * @module
 */

/** Runs buf generate in `protoDir` (default: this repository's proto/). */
export async function generate(protoDir: string, outDir = "gen"): Promise<void> {
  const args = ["generate", "--template", JSON.stringify(template(outDir))];
  const { code, stderr } = await new Deno.Command("buf", { args, cwd: protoDir, stderr: "piped" })
    .output();
  if (code !== 0) {
    throw new Error(`buf generate failed (exit ${code}): ${new TextDecoder().decode(stderr)}`);
  }
}

function template(outDir: string) {
  return {
    version: "v2",
    clean: true,
    plugins: [{ local: "protoc-gen-es", out: outDir, opt: ["target=ts", "import_extension=ts"] }],
  };
}

if (import.meta.main) {
  await generate(new URL("../proto/", import.meta.url).pathname);
  console.log("proto/gen/ regenerated from proto/meow.proto");
}
