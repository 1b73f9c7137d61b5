/**
 * Settles synchronous work as a promise, for adapters whose backing store is
 * synchronous (memory, `node:sqlite`) behind the async `Store` port.
 *
 * @module
 */
/** Runs `f` now; a throw becomes a rejection, as it would from an async store. */
export function run<T>(f: () => T): Promise<T> {
  try {
    return Promise.resolve(f());
  } catch (e) {
    return Promise.reject(e);
  }
}
