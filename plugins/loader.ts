/**
 * Loading a plugin module from a file (`deno task sim --plugin FILE`, a scenario's `plugins:`, the
 * agent's `--plugin FILE` and its home's `plugins` list). The file's default export is a
 * {@linkcode PluginModule} or a bare factory of a plugin; anything else — a missing file, one that
 * throws while loading, a factory that throws or returns no plugin, a name another plugin has — is
 * one {@linkcode PluginModuleError} naming the file and what is wrong.
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Plugin, PluginModule } from "../kernel/mod.ts";

/** A plugin module that cannot be used; the message names the file and what is wrong. */
export class PluginModuleError extends Error {
  override name = "PluginModuleError";
  /** The file, as given. */
  readonly file: string;

  constructor(file: string, what: string, options?: ErrorOptions) {
    super(`plugin ${file}: ${what}`, options);
    this.file = file;
  }
}

const NAME = /^[a-z][a-z0-9_]{0,39}$/;

/** Checks a plugin a module's factory made. */
function checkPlugin(file: string, plugin: unknown): Plugin {
  if (typeof plugin !== "object" || plugin === null) {
    throw new PluginModuleError(file, "its factory returned no plugin object");
  }
  const name = (plugin as { name?: unknown }).name;
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new PluginModuleError(
      file,
      `its plugin's name ${JSON.stringify(name)} is not a lower-case word (a-z, 0-9, _)`,
    );
  }
  return plugin as Plugin;
}

/**
 * Imports `file` (relative to `base`, a directory; default the working directory) and returns its
 * module, its factory checked once.
 *
 * @throws {PluginModuleError} for a missing file, one that throws, a wrong shape, a name in `taken`
 */
export async function loadPluginModule(
  file: string,
  options: { base?: string; taken?: ReadonlySet<string> } = {},
): Promise<PluginModule> {
  const path = isAbsolute(file) ? file : resolve(options.base ?? Deno.cwd(), file);
  try {
    const stat = await Deno.stat(path);
    if (!stat.isFile) throw new PluginModuleError(file, "is not a file");
  } catch (e) {
    if (e instanceof PluginModuleError) throw e;
    throw new PluginModuleError(file, `cannot be read (${(e as Error).message})`, { cause: e });
  }
  let exported: unknown;
  try {
    exported = (await import(pathToFileURL(path).href)).default;
  } catch (e) {
    throw new PluginModuleError(file, `failed to load: ${(e as Error).message}`, { cause: e });
  }
  let module: PluginModule;
  const made = (create: () => unknown) => {
    try {
      return checkPlugin(file, create());
    } catch (e) {
      if (e instanceof PluginModuleError) throw e;
      throw new PluginModuleError(file, `its factory threw: ${(e as Error).message}`, { cause: e });
    }
  };
  if (typeof exported === "function") {
    const create = exported as () => Plugin;
    module = { name: made(create).name, create };
  } else if (
    typeof exported === "object" && exported !== null &&
    typeof (exported as PluginModule).create === "function"
  ) {
    module = exported as PluginModule;
    const plugin = made(() => module.create());
    if (module.name !== plugin.name) {
      throw new PluginModuleError(
        file,
        `the module is named "${module.name}" but its plugin "${plugin.name}"`,
      );
    }
  } else {
    throw new PluginModuleError(
      file,
      "its default export is neither a plugin factory nor a module { name, create, … }",
    );
  }
  if (options.taken?.has(module.name)) {
    throw new PluginModuleError(file, `a plugin named "${module.name}" is loaded already`);
  }
  for (const [kind, table] of [["step", module.steps], ["expectation", module.expectations]]) {
    for (const [name, ext] of Object.entries(table ?? {})) {
      const run = kind === "step" ? (ext as { run?: unknown }).run : (ext as { check?: unknown })
        .check;
      if (!/^[a-z][a-z0-9_]*$/.test(name) || typeof run !== "function") {
        throw new PluginModuleError(file, `its ${kind} "${name}" is malformed`);
      }
    }
  }
  for (const [name, command] of Object.entries(module.commands ?? {})) {
    if (!/^[a-z][a-z0-9-]*$/.test(name) || typeof command.run !== "function") {
      throw new PluginModuleError(file, `its command "${name}" is malformed`);
    }
  }
  return module;
}
