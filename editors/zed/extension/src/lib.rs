//! Zed starts language servers only through extensions: this one runs `foretell serve` (or the
//! binary and arguments given under `lsp.foretell.binary` in settings) and passes
//! `lsp.foretell.initialization_options` through.

use zed_extension_api::{self as zed, settings::LspSettings, LanguageServerId, Result};

struct Foretell;

impl zed::Extension for Foretell {
    fn new() -> Self {
        Foretell
    }

    fn language_server_command(&mut self, id: &LanguageServerId, worktree: &zed::Worktree) -> Result<zed::Command> {
        let binary = LspSettings::for_worktree(id.as_ref(), worktree)?.binary;
        let path = binary.as_ref().and_then(|b| b.path.clone()).or_else(|| worktree.which("foretell"));
        let command = path.ok_or("foretell is not on PATH: install it (`pipx install .` in a foretell checkout)")?;
        let args = binary.and_then(|b| b.arguments).unwrap_or_else(|| vec!["serve".into()]);
        Ok(zed::Command { command, args, env: worktree.shell_env() })
    }

    fn language_server_initialization_options(
        &mut self,
        id: &LanguageServerId,
        worktree: &zed::Worktree,
    ) -> Result<Option<zed::serde_json::Value>> {
        Ok(LspSettings::for_worktree(id.as_ref(), worktree)?.initialization_options)
    }
}

zed::register_extension!(Foretell);
