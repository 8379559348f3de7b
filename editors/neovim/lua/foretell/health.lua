-- :checkhealth foretell
local M = {}

local health = vim.health or require("health")
local start = health.start or health.report_start
local ok = health.ok or health.report_ok
local warn = health.warn or health.report_warn
local error = health.error or health.report_error

function M.check()
  start("foretell")
  local v = vim.version()
  if v.major == 0 and v.minor < 7 then
    error("Neovim 0.7 or newer is needed")
  else
    ok(string.format("Neovim %d.%d.%d", v.major, v.minor, v.patch))
  end
  local config = require("foretell").config
  local exe = config.cmd[1]
  if vim.fn.executable(exe) == 0 then
    error("`" .. exe .. "` is not on PATH: pip install foretell (or set cmd in setup)")
    return
  end
  local version = vim.fn.system({ exe, "--version" })
  if vim.v.shell_error ~= 0 then
    error("`" .. exe .. " --version` failed: " .. version)
    return
  end
  ok(vim.trim(version))
  local listing = vim.fn.system({ exe, "models", "list", "--json" })
  local decoded = vim.v.shell_error == 0 and vim.fn.json_decode(listing) or nil
  if decoded and #decoded.models > 0 then
    ok(string.format("%d model(s) in the store", #decoded.models))
  else
    warn("no models yet: the default model is built on first use (a few seconds)")
  end
  local get = vim.lsp.get_clients or vim.lsp.get_active_clients
  local running = vim.tbl_filter(function(c) return c.name == "foretell" end, get())
  if #running > 0 then
    local buffers = vim.tbl_count(running[1].attached_buffers or {})
    ok(string.format("the language server is running, attached to %d buffer(s)", buffers))
  else
    warn("the language server is not running: open a file of an enabled filetype (" .. table.concat(config.filetypes, ", ") .. ")")
  end
end

return M
