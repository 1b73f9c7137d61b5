import { backendConformance } from "./backend_conformance.ts";
import { MemoryBackend, MemoryData } from "./memory.ts";

backendConformance("MemoryBackend", () => {
  const data = new MemoryData();
  return Promise.resolve({
    open: () => Promise.resolve(new MemoryBackend({ data })),
    cleanup: () => Promise.resolve(),
  });
});
