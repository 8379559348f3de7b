-- foretell for Neovim: starts `foretell serve` for prose filetypes through the built-in LSP
-- client, turns on completion, links surprisal highlight groups, and adds :Foretell.
local M = {}

local defaults = {
  cmd = { "foretell", "serve" },
  model = nil, -- a model name from `foretell models list`; nil uses the default model
  filetypes = { "text", "markdown", "rst", "tex", "org", "gitcommit", "asciidoc" },
  autotrigger = true, -- 0.11+: open the completion menu as you type
  settings = {}, -- passed to the server under `foretell` (see the README)
}

M.config = vim.deepcopy(defaults)

-- Neovim filetypes -> the language ids the server enables.
local language_ids = {
  text = "plaintext", markdown = "markdown", rst = "rst", tex = "tex", org = "org",
  gitcommit = "gitcommit", asciidoc = "asciidoc",
}

local buckets = {
  foretellTop10 = "ForetellTop10", foretellTop100 = "ForetellTop100",
  foretellTop1000 = "ForetellTop1000", foretellRare = "ForetellRare",
}

local function has(minor)
  local v = vim.version()
  return v.major > 0 or v.minor >= minor
end

local function server_settings()
  local settings = vim.deepcopy(M.config.settings)
  if M.config.model then
    settings.model = M.config.model
  end
  local languages = {}
  for _, ft in ipairs(M.config.filetypes) do
    table.insert(languages, language_ids[ft] or ft)
  end
  settings.languages = settings.languages or languages
  return { foretell = settings }
end

function M.highlights()
  local links = {
    ForetellTop10 = "Normal", ForetellTop100 = "DiagnosticHint",
    ForetellTop1000 = "DiagnosticWarn", ForetellRare = "DiagnosticError", ForetellUnknown = "Underlined",
  }
  for group, target in pairs(links) do
    vim.api.nvim_set_hl(0, group, { link = target, default = true })
  end
  if has(9) then
    for token_type, group in pairs(buckets) do
      vim.api.nvim_set_hl(0, "@lsp.type." .. token_type, { link = group, default = true })
    end
    vim.api.nvim_set_hl(0, "@lsp.mod.unknown", { link = "ForetellUnknown", default = true })
  end
end

function M.client(bufnr)
  local get = vim.lsp.get_clients or vim.lsp.get_active_clients
  for _, client in ipairs(get({ bufnr = bufnr or 0 })) do
    if client.name == "foretell" then
      return client
    end
  end
end

-- Before 0.9 Neovim has no semantic tokens: colour words from foretell/surprisal instead.
local namespace = vim.api.nvim_create_namespace("foretell")

function M.refresh_highlights(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local client = M.client(bufnr)
  if not client then
    return
  end
  client.request("foretell/surprisal", { textDocument = { uri = vim.uri_from_bufnr(bufnr) } }, function(err, result)
    if err or not result or not vim.api.nvim_buf_is_valid(bufnr) then
      return
    end
    vim.api.nvim_buf_clear_namespace(bufnr, namespace, 0, -1)
    for _, token in ipairs(result.tokens) do
      local r = token.range
      local group = token.rank <= 10 and "ForetellTop10" or token.rank <= 100 and "ForetellTop100"
        or token.rank <= 1000 and "ForetellTop1000" or "ForetellRare"
      pcall(vim.api.nvim_buf_set_extmark, bufnr, namespace, r.start.line, r.start.character,
        { end_line = r["end"].line, end_col = r["end"].character, hl_group = group })
    end
  end, bufnr)
end

local function on_attach(client, bufnr)
  if has(11) and vim.lsp.completion then
    vim.lsp.completion.enable(true, client.id, bufnr, { autotrigger = M.config.autotrigger })
  else
    vim.api.nvim_buf_set_option(bufnr, "omnifunc", "v:lua.vim.lsp.omnifunc")
  end
  if not has(9) then
    M.refresh_highlights(bufnr)
    vim.api.nvim_create_autocmd({ "InsertLeave", "BufWritePost", "TextChanged" }, {
      buffer = bufnr,
      callback = function() M.refresh_highlights(bufnr) end,
    })
  end
end

local function root_dir(bufnr)
  local name = vim.api.nvim_buf_get_name(bufnr)
  local found = vim.fn.finddir(".git", vim.fn.fnamemodify(name, ":p:h") .. ";")
  if found ~= "" then
    return vim.fn.fnamemodify(found, ":p:h:h")
  end
  return vim.fn.getcwd()
end

local function start_legacy(bufnr)
  -- 0.7-0.10 without vim.lsp.config: one client, attached to every prose buffer.
  local config = {
    name = "foretell",
    cmd = M.config.cmd,
    root_dir = root_dir(bufnr),
    init_options = server_settings(),
    settings = server_settings(),
    on_attach = on_attach,
  }
  if vim.lsp.start then
    vim.lsp.start(config, { bufnr = bufnr })
    return
  end
  M._client_id = M._client_id or vim.lsp.start_client(config)
  if M._client_id then
    vim.lsp.buf_attach_client(bufnr, M._client_id)
  end
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(defaults), opts or {})
  M.highlights()
  vim.api.nvim_create_autocmd("ColorScheme", { callback = M.highlights })
  if vim.fn.executable(M.config.cmd[1]) == 0 then
    vim.notify("foretell: `" .. M.config.cmd[1] .. "` not found; install it with `pip install foretell` "
      .. "(or set cmd in require('foretell').setup)", vim.log.levels.WARN)
    return
  end
  if has(11) and vim.lsp.config then
    vim.lsp.config("foretell", {
      cmd = M.config.cmd,
      filetypes = M.config.filetypes,
      root_markers = { ".git" },
      init_options = server_settings(),
      settings = server_settings(),
      on_attach = on_attach,
    })
    vim.lsp.enable("foretell")
  else
    vim.api.nvim_create_autocmd("FileType", {
      pattern = M.config.filetypes,
      callback = function(args) start_legacy(args.buf) end,
    })
  end
end

local function execute(command, arguments, done)
  local client = M.client(0)
  if not client then
    vim.notify("foretell: no language server attached to this buffer", vim.log.levels.ERROR)
    return
  end
  client.request("workspace/executeCommand", { command = command, arguments = arguments }, function(err, result)
    if err then
      vim.notify("foretell: " .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
    elseif done then
      done(result)
    end
  end, vim.api.nvim_get_current_buf())
end

M.subcommands = {
  score = function()
    execute("foretell.scoreDocument", { vim.uri_from_bufnr(0) }, function(r)
      M.last_score = r
      vim.notify(string.format("foretell: perplexity %.1f over %d tokens", r.perplexity, r.tokens))
    end)
  end,
  model = function(name)
    if not name or name == "" then
      vim.notify("foretell: :Foretell model NAME", vim.log.levels.ERROR)
      return
    end
    execute("foretell.switchModel", { name }, function(r)
      M.config.model = name
      vim.notify(string.format("foretell: using %s (%s, %d words)", r.model, r.backend, r.vocabulary))
    end)
  end,
  train = function(name)
    execute("foretell.trainWorkspace", { name ~= "" and name or "workspace" }, function(r)
      vim.notify(string.format("foretell: trained %s on %d documents", r.model, r.documents))
    end)
  end,
}

function M.command(args)
  local sub, rest = args:match("^(%S+)%s*(.*)$")
  local fn = M.subcommands[sub or ""]
  if not fn then
    vim.notify("foretell: :Foretell score | model NAME | train [NAME]", vim.log.levels.ERROR)
    return
  end
  fn(rest)
end

return M
