# foretell for Kakoune through kakoune-lsp (v18 and newer): source this after kak-lsp is loaded,
# e.g. in kakrc after `eval %sh{kak-lsp}` and `lsp-enable`.
hook -group lsp-filetype-foretell global BufSetOption filetype=(?:markdown|asciidoc|restructuredtext|git-commit) %{
    set-option -add buffer lsp_servers %{
        [foretell]
        root_globs = [".git", ".hg"]
        command = "foretell"
        args = ["serve"]
        settings_section = "foretell"
        [foretell.settings.foretell]
        maxSuggestions = 10
        surprisal.diagnostics = true
        surprisal.inlayHints = true
        surprisal.threshold = 12
    }
}
