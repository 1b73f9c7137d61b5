import { backendConformance } from "./backend_conformance.ts";
import type { Backend } from "./backend.ts";
import { KvBackend } from "./kv.ts";

// A local Deno KV file takes one writer process: a second handle on the same
// file fails commits with "database is locked" under contention. So backends
// opened while another is open share its handle, as concurrent requests in one
// relay process do; a backend opened after every handle closed reopens the file
// (the crash case).
backendConformance("KvBackend", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meowsync-kv-" });
  const path = `${dir}/relay.kv`;
  let shared: { kv: Deno.Kv; users: number } | undefined;
  const open = async (): Promise<Backend> => {
    if (!shared) shared = { kv: await Deno.openKv(path), users: 0 };
    const handle = shared;
    handle.users++;
    const backend = KvBackend.over(handle.kv);
    let closed = false;
    return new Proxy(backend, {
      get(target, property) {
        if (property === "close") {
          return async () => {
            if (closed) return;
            closed = true;
            if (--handle.users === 0) {
              if (shared === handle) shared = undefined;
              await target.close();
            }
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  };
  return { open, cleanup: () => Deno.remove(dir, { recursive: true }) };
});
