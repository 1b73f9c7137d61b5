/**
 * The files of the on-disk stores are the owner's only: a store file is
 * created with mode 0600 before its database opens it, so the database never
 * writes a record into a file others can read. SQLite (under Deno KV too)
 * gives its side files (`-wal`, `-shm`, a journal) the main file's mode.
 *
 * @module
 */

/** The mode of a store file: read and write for its owner, nothing for anyone else. */
export const STORE_FILE_MODE = 0o600;

/**
 * Creates an empty file at `path`, readable and writable by its owner only,
 * unless a file is there already (an existing store keeps its file). An empty
 * file is an empty SQLite database, for `node:sqlite` and Deno KV alike.
 * Synchronous, for the synchronous SQLite adapter; it runs once per open.
 */
export function createOwnerOnly(path: string): void {
  try {
    Deno.openSync(path, { write: true, createNew: true, mode: STORE_FILE_MODE }).close();
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
  }
}
