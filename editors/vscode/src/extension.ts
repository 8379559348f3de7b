// foretell for VS Code: starts `foretell serve` for prose languages through vscode-languageclient,
// with commands to score the document, switch model and train on the workspace, and a status bar
// item with the model and the document's perplexity.
import { execFile } from "child_process";
import * as vscode from "vscode";
import { DidChangeConfigurationNotification, ExecuteCommandRequest, LanguageClient, LanguageClientOptions, ServerOptions } from "vscode-languageclient/node";
import { MISSING_MESSAGE, findForetell, modelChoices, serverCommand, serverSettings } from "./server";

let client: LanguageClient | undefined;
let status: vscode.StatusBarItem;
let executable: string | undefined;

function config() {
  const c = vscode.workspace.getConfiguration("foretell");
  return <T>(key: string, fallback: T): T => c.get<T>(key, fallback);
}

function folders(): string[] {
  return (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath);
}

async function runServerCommand<T>(command: string, args: unknown[]): Promise<T | undefined> {
  if (!client) {
    void vscode.window.showErrorMessage("foretell: the language server is not running.");
    return undefined;
  }
  return client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args }) as Promise<T>;
}

async function updateStatus(editor = vscode.window.activeTextEditor) {
  const model = (config()("model", null) as string | null) || "default";
  if (!editor || !client || !config()<string[]>("languages", []).includes(editor.document.languageId)) {
    status.text = `$(pencil) ${model}`;
    return;
  }
  try {
    const result = await client.sendRequest<{ perplexity: number | null }>("foretell/surprisal", {
      textDocument: { uri: editor.document.uri.toString() },
    });
    const ppl = result?.perplexity;
    status.text = `$(pencil) ${model}` + (ppl ? ` · ppl ${ppl.toFixed(1)}` : "");
  } catch {
    status.text = `$(pencil) ${model}`;
  }
}

async function start(context: vscode.ExtensionContext) {
  const get = config();
  executable = findForetell(get("path", ""), folders());
  if (!executable) {
    void vscode.window.showErrorMessage(MISSING_MESSAGE);
    status.text = "$(warning) foretell not installed";
    return;
  }
  const { command, args } = serverCommand(executable, null);
  const serverOptions: ServerOptions = { command, args };
  const languages = get<string[]>("languages", []);
  const clientOptions: LanguageClientOptions = {
    documentSelector: languages.map((language) => ({ language })),
    initializationOptions: { foretell: serverSettings(get) },
  };
  client = new LanguageClient("foretell", "foretell", serverOptions, clientOptions);
  await client.start();
  context.subscriptions.push(client);
  await updateStatus();
}

export async function activate(context: vscode.ExtensionContext) {
  status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  status.command = "foretell.selectModel";
  status.tooltip = "foretell: model and perplexity of this document (click to switch model)";
  status.show();
  context.subscriptions.push(status);

  context.subscriptions.push(
    vscode.commands.registerCommand("foretell.score", async () => {
      const editor = vscode.window.activeTextEditor;
      if (!editor) return;
      const r = await runServerCommand<{ perplexity: number; tokens: number }>("foretell.scoreDocument", [editor.document.uri.toString()]);
      if (r) void vscode.window.showInformationMessage(`foretell: perplexity ${r.perplexity.toFixed(1)} over ${r.tokens} tokens`);
    }),
    vscode.commands.registerCommand("foretell.selectModel", async () => {
      if (!executable) return void vscode.window.showErrorMessage(MISSING_MESSAGE);
      const listing = await new Promise<string>((resolve, reject) =>
        execFile(executable!, ["models", "list", "--json"], (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(stdout))),
      );
      const pick = await vscode.window.showQuickPick(modelChoices(listing), { placeHolder: "Model for completion and surprisal" });
      if (!pick) return;
      await runServerCommand("foretell.switchModel", [pick.label]);
      await vscode.workspace.getConfiguration("foretell").update("model", pick.label, vscode.ConfigurationTarget.Global);
      await updateStatus();
    }),
    vscode.commands.registerCommand("foretell.train", async () => {
      const name = await vscode.window.showInputBox({ prompt: "Name for the model trained on this workspace", value: "workspace" });
      if (!name) return;
      const r = await runServerCommand<{ documents: number; tokens: number }>("foretell.trainWorkspace", [name]);
      if (r) void vscode.window.showInformationMessage(`foretell: trained ${name} on ${r.documents} documents (${r.tokens} tokens)`);
      await updateStatus();
    }),
    vscode.window.onDidChangeActiveTextEditor((e) => void updateStatus(e)),
    vscode.workspace.onDidChangeConfiguration((e) => {
      // The server reads the object `serverSettings` builds, not VS Code's raw dotted keys.
      if (e.affectsConfiguration("foretell") && client) {
        void client.sendNotification(DidChangeConfigurationNotification.type, { settings: { foretell: serverSettings(config()) } });
        void updateStatus();
      }
    }),
    vscode.workspace.onDidSaveTextDocument(() => void updateStatus()),
  );
  await start(context);
}

export async function deactivate() {
  await client?.stop();
}
