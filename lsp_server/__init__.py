"""foretell's language server (pygls 2): completion, inline completion, hover and surprisal
views over any foretell model. Handlers are thin; the work lives in ``analysis`` and the engine."""
