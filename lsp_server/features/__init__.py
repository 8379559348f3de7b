"""One module per feature: each turns engine results into LSP types, nothing more."""
