// What the extension decides before it talks to VS Code: which foretell executable to start
// and which settings to send. No `vscode` import here, so it is tested in plain Node.
import * as fs from "fs";
import * as path from "path";

export interface ServerCommand {
  command: string;
  args: string[];
}

const exe = process.platform === "win32" ? "foretell.exe" : "foretell";

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The configured path, else the workspace's virtual environment, else PATH; undefined if none. */
export function findForetell(configured: string, workspaceFolders: string[], envPath = process.env.PATH ?? ""): string | undefined {
  if (configured) {
    return isExecutable(configured) ? configured : undefined;
  }
  const bin = process.platform === "win32" ? "Scripts" : "bin";
  for (const folder of workspaceFolders) {
    for (const venv of [".venv", "venv", "env"]) {
      const candidate = path.join(folder, venv, bin, exe);
      if (isExecutable(candidate)) {
        return candidate;
      }
    }
  }
  for (const dir of envPath.split(path.delimiter)) {
    const candidate = path.join(dir, exe);
    if (dir && isExecutable(candidate)) {
      return candidate;
    }
  }
  return undefined;
}

export function serverCommand(executable: string, model: string | null | undefined): ServerCommand {
  return { command: executable, args: model ? ["serve", "-m", model] : ["serve"] };
}

export const MISSING_MESSAGE =
  "foretell: the `foretell` command was not found. Install it with `pip install foretell` " +
  "(in this workspace's .venv or on PATH), or set `foretell.path`.";

// VS Code language ids -> the ids the server knows.
const LANGUAGE_IDS: Record<string, string> = {
  restructuredtext: "rst",
  latex: "tex",
  "git-commit": "gitcommit",
};

export type Get = <T>(key: string, fallback: T) => T;

/** The `foretell` settings object the server reads (initializationOptions / didChangeConfiguration). */
export function serverSettings(get: Get): Record<string, unknown> {
  const languages = get<string[]>("languages", []);
  return {
    model: get<string | null>("model", null) || null,
    maxSuggestions: get("maxSuggestions", 10),
    languages: Array.from(new Set([...languages, ...languages.map((l) => LANGUAGE_IDS[l] ?? l)])),
    incognito: get("incognito", false),
    exclude: get<string[]>("exclude", []),
    surprisal: {
      semanticTokens: get("surprisal.semanticTokens", true),
      inlayHints: get("surprisal.inlayHints", false),
      diagnostics: get("surprisal.diagnostics", false),
      threshold: get("surprisal.threshold", 12),
    },
    inlineCompletion: {
      enabled: get("inlineCompletion.enabled", true),
      maxWords: get("inlineCompletion.maxWords", 4),
    },
    learning: {
      enabled: get("learning.enabled", false),
    },
    history: {
      enabled: get("history.enabled", true),
    },
  };
}

export interface ModelRow {
  name: string;
  backend?: string;
  vocabulary?: number;
  default?: boolean;
  error?: string;
}

/** Quick-pick entries from `foretell models list --json`. */
export function modelChoices(json: string): { label: string; description: string }[] {
  const rows: ModelRow[] = JSON.parse(json).models ?? [];
  return rows
    .filter((r) => !r.error)
    .map((r) => ({
      label: r.name,
      description: `${r.backend ?? "?"}, ${r.vocabulary?.toLocaleString("en") ?? "?"} words${r.default ? " (default)" : ""}`,
    }));
}
