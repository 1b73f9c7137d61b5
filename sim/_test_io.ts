/**
 * Test helper, private to tests: a `CliIo` that collects standard output and
 * error in strings, on a clock that reads 0.
 *
 * @module
 */
import type { CliIo } from "./cli.ts";

/** A CLI sink for tests; `options` override any field (workers, plugin modules, …). */
export function testIo(options: Partial<CliIo> = {}): CliIo & { stdout: string; stderr: string } {
  const sink = {
    stdout: "",
    stderr: "",
    out(text: string) {
      sink.stdout += text;
    },
    err(text: string) {
      sink.stderr += text;
    },
    errIsTerminal: false,
    wallClock: () => 0,
    uniqueId: () => "test",
    ...options,
  };
  return sink;
}
