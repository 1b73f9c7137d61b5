/**
 * The plugin modules of a home: the ones shipped with meowsync (reactions, edits, deletions), then
 * the home's `plugins` list in `agent.json` (paths relative to the home), then every `--plugin
 * FILE` (relative to the working directory). Each module's plugin runs on the device; its commands
 * join the CLI's; its notes join `history`. A module that cannot be used is one usage error (exit
 * 2) naming the file. docs/PLUGINS.md is the guide.
 *
 * @module
 */
import type { PluginModule } from "../kernel/mod.ts";
import { BUILTIN_MODULES, loadPluginModule, PluginModuleError } from "../plugins/mod.ts";
import { productionPlugins } from "../plugins/mod.ts";
import { AgentError, EXIT } from "./errors.ts";
import { type HomePaths, readConfig } from "./home.ts";

/** The names of the plugins every device runs: a loaded module may not take one. */
function builtinNames(): Set<string> {
  return new Set([
    ...productionPlugins().map((p) => p.name),
    ...BUILTIN_MODULES.map((m) => m.name),
  ]);
}

/**
 * The modules a home loads besides the built-in ones: its config's `plugins`, then `files`.
 *
 * @throws {AgentError} (exit 2) for a module that cannot be used, naming the file
 */
export async function loadHomeModules(
  paths: HomePaths | undefined,
  files: readonly string[],
): Promise<PluginModule[]> {
  let listed: string[] = [];
  try {
    if (paths) listed = (await readConfig(paths))?.plugins ?? [];
  } catch (e) {
    // An unreadable agent.json is reported by the command that needs it.
    if (!(e instanceof AgentError)) throw e;
  }
  const taken = builtinNames();
  const out: PluginModule[] = [];
  const load = async (file: string, base: string | undefined) => {
    try {
      const module = await loadPluginModule(file, { base, taken });
      taken.add(module.name);
      out.push(module);
    } catch (e) {
      if (e instanceof PluginModuleError) throw new AgentError(e.message, EXIT.usage);
      throw e;
    }
  };
  for (const file of listed) await load(file, paths?.dir);
  for (const file of files) await load(file, undefined);
  return out;
}

/** Every module of an agent that loaded `extra`: the built-in ones first. */
export function allModules(extra: readonly PluginModule[]): readonly PluginModule[] {
  return [...BUILTIN_MODULES, ...extra];
}
