import { Session } from "node:inspector/promises";
import { runScenario } from "./sim/run.ts";
import { crowd } from "./bench/sim_bench.ts";
const session = new Session();
session.connect();
const chunks: string[] = [];
session.on("HeapProfiler.addHeapSnapshotChunk", (m: any) => chunks.push(m.params.chunk));
let taken: Promise<unknown> | undefined;
const users = Number(Deno.args[0] ?? 100);
const report = await runScenario(crowd(users, users * 10, "5s", 300_000), {
  progress: (v) => {
    if (!taken && v > 380_000) {
      console.log("snapshot at", v, Deno.memoryUsage());
      taken = session.post("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
    }
  },
});
await taken;
console.log(report.ok, report.stats.virtualMs, chunks.length);
Deno.writeTextFileSync("/tmp/scratch/heap.heapsnapshot", chunks.join(""));
