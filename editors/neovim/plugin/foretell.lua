-- :Foretell score | model NAME | train [NAME]. The server itself starts from require("foretell").setup().
if vim.g.loaded_foretell then
  return
end
vim.g.loaded_foretell = true

vim.api.nvim_create_user_command("Foretell", function(opts)
  require("foretell").command(opts.args)
end, {
  nargs = "+",
  complete = function(arglead, line)
    if line:match("^%s*Foretell%s+%S*$") then
      return vim.tbl_filter(function(s) return s:find(arglead, 1, true) == 1 end, { "score", "model", "train" })
    end
    return {}
  end,
})
