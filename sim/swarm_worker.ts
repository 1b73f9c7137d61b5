/**
 * A worker of a seed swarm (see `swarm.ts`): runs each {@linkcode SeedJob} it
 * is sent with {@linkcode runSeed} and posts back the {@linkcode SeedResult}.
 * One job at a time, so the global crypto runner of a run is never shared.
 *
 * @module
 */
import { runSeed, type SeedJob, type SeedResult, type WorkerRequest } from "./swarm.ts";

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: SeedResult): void;
};

scope.onmessage = async (e: MessageEvent<WorkerRequest>): Promise<void> => {
  const job: SeedJob = e.data.job;
  let result: SeedResult;
  try {
    result = await runSeed(job);
  } catch (error) {
    result = { seed: job.seed, error: (error as Error)?.stack ?? String(error) };
  }
  scope.postMessage(result);
};
