// The extension's own logic, and the real `foretell serve` spoken to through the protocol layer
// that vscode-languageclient is built on (vscode-languageserver-protocol over stdio).
import { strict as assert } from "assert";
import { ChildProcess, execFileSync, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { after, before, describe, it } from "node:test";
import {
  CompletionList,
  CompletionRequest,
  createProtocolConnection,
  DidOpenTextDocumentNotification,
  ExecuteCommandRequest,
  HoverRequest,
  InitializeRequest,
  InitializedNotification,
  MarkupContent,
  ProtocolConnection,
  SemanticTokensRequest,
  ShutdownRequest,
  StreamMessageReader,
  StreamMessageWriter,
} from "vscode-languageserver-protocol/node";
import { findForetell, modelChoices, serverCommand, serverSettings } from "../server";

// The defaults a user gets: the ones package.json contributes.
const contributed = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8")).contributes.configuration.properties;
const defaults = <T>(key: string, fallback: T): T => (`foretell.${key}` in contributed ? contributed[`foretell.${key}`].default : fallback);

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "foretell-vscode-"));
}

function fakeExecutable(file: string) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, "#!/bin/sh\n");
  fs.chmodSync(file, 0o755);
}

describe("finding the foretell executable", () => {
  it("prefers the configured path, then the workspace's .venv, then PATH", () => {
    const dir = tempDir();
    const onPath = path.join(dir, "path-bin", "foretell");
    const inVenv = path.join(dir, "ws", ".venv", "bin", "foretell");
    fakeExecutable(onPath);
    assert.equal(findForetell("", [path.join(dir, "ws")], path.dirname(onPath)), onPath);
    fakeExecutable(inVenv);
    assert.equal(findForetell("", [path.join(dir, "ws")], path.dirname(onPath)), inVenv);
    assert.equal(findForetell(onPath, [path.join(dir, "ws")], ""), onPath);
  });

  it("says when it cannot find one", () => {
    assert.equal(findForetell("", [tempDir()], tempDir()), undefined);
    assert.equal(findForetell("/no/such/foretell", [], ""), undefined);
  });

  it("serves the chosen model", () => {
    assert.deepEqual(serverCommand("/x/foretell", "notes"), { command: "/x/foretell", args: ["serve", "-m", "notes"] });
    assert.deepEqual(serverCommand("/x/foretell", null), { command: "/x/foretell", args: ["serve"] });
  });
});

describe("completion while typing", () => {
  it("turns VS Code's quick suggestions on in every language the extension serves", () => {
    // VS Code switches them off in Markdown by default (microsoft/vscode#108777): without this,
    // word completion would appear only after a space, never inside a half-typed word.
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8"));
    const languages = pkg.activationEvents.map((e: string) => e.split(":")[1]);
    assert.ok(languages.includes("markdown"));
    for (const language of languages) {
      const defaults = pkg.contributes.configurationDefaults[`[${language}]`];
      assert.equal(defaults["editor.quickSuggestions"].other, "on", language);
      assert.equal(defaults["editor.inlineSuggest.enabled"], true, language);
    }
  });
});

describe("settings sent to the server", () => {
  it("maps VS Code's language ids and nests the options as the server reads them", () => {
    const values: Record<string, unknown> = { languages: ["markdown", "restructuredtext", "git-commit"], "surprisal.threshold": 9, exclude: ["private"] };
    const get = <T>(key: string, fallback: T): T => (key in values ? (values[key] as T) : fallback);
    const s = serverSettings(get) as any;
    assert.deepEqual(s.languages.sort(), ["git-commit", "gitcommit", "markdown", "restructuredtext", "rst"]);
    assert.equal(s.surprisal.threshold, 9);
    assert.equal(s.maxSuggestions, 10);
    assert.equal(s.model, null);
    assert.equal(s.learning.enabled, false);
    assert.equal(s.history.enabled, true);
    assert.equal(s.incognito, false);
    assert.deepEqual(s.exclude, ["private"]);
  });

  it("lists models for the quick pick", () => {
    const json = JSON.stringify({ models: [{ name: "notes", backend: "ngram", vocabulary: 1609, default: true }, { name: "bad", error: "corrupt" }] });
    assert.deepEqual(modelChoices(json), [{ label: "notes", description: "ngram, 1,609 words (default)" }]);
  });
});

describe("the real language server", () => {
  const foretell = findForetell(process.env.FORETELL_EXECUTABLE ?? "", [], process.env.PATH);
  let server: ChildProcess;
  let connection: ProtocolConnection;
  const uri = "file:///tmp/notes.md";
  const text = "The cat sat on the mat. The dog sat on the ";

  before(async () => {
    assert.ok(foretell, "foretell must be installed (pip install -e . at the repository root)");
    const home = tempDir();
    const corpus = path.join(home, "corpus.md");
    fs.writeFileSync(corpus, "The cat sat on the mat. The dog sat on the mat. A cat and a dog met on the mat.\n".repeat(3));
    const env = { ...process.env, FORETELL_HOME: home };
    execFileSync(foretell!, ["train", "--name", "default", "--order", "3", corpus], { env });
    server = spawn(foretell!, ["serve"], { env, stdio: ["pipe", "pipe", "inherit"] });
    connection = createProtocolConnection(new StreamMessageReader(server.stdout!), new StreamMessageWriter(server.stdin!));
    connection.listen();
    const result = await connection.sendRequest(InitializeRequest.type, {
      processId: process.pid,
      rootUri: null,
      capabilities: { textDocument: { completion: { completionItem: { snippetSupport: true } }, hover: { contentFormat: ["markdown"] } } },
      initializationOptions: { foretell: serverSettings(defaults) },
    });
    assert.deepEqual(result.capabilities.completionProvider?.triggerCharacters, [" "]);
    await connection.sendNotification(InitializedNotification.type, {});
    await connection.sendNotification(DidOpenTextDocumentNotification.type, { textDocument: { uri, languageId: "markdown", version: 1, text } });
  });

  after(async () => {
    await connection?.sendRequest(ShutdownRequest.type);
    connection?.dispose();
    server?.kill();
  });

  it("completes the next word", async () => {
    const list = (await connection.sendRequest(CompletionRequest.type, { textDocument: { uri }, position: { line: 0, character: text.length } })) as CompletionList;
    assert.equal(list.isIncomplete, true);
    assert.equal(list.items[0].label, "mat");
  });

  it("explains a word on hover", async () => {
    const hover = await connection.sendRequest(HoverRequest.type, { textDocument: { uri }, position: { line: 0, character: 20 } });
    const value = (hover?.contents as MarkupContent).value;
    assert.match(value, /\*\*mat\*\*/);
    assert.match(value, /bits/);
  });

  it("colours every word with a semantic token", async () => {
    const tokens = await connection.sendRequest(SemanticTokensRequest.type, { textDocument: { uri } });
    assert.equal(tokens!.data.length, 5 * 12); // 12 words and punctuation marks
  });

  it("scores the document", async () => {
    const r = (await connection.sendRequest(ExecuteCommandRequest.type, { command: "foretell.scoreDocument", arguments: [uri] })) as any;
    assert.ok(r.perplexity > 1 && r.tokens === 14); // 12 tokens and two </s>
  });
});
