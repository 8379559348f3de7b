"""foretell's built-in backends, each an ordinary plugin registered through an entry point."""
