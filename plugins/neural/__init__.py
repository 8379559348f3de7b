"""What the torch backends share: options, one training loop, device and thread choice, and
storage of state dicts (loaded with ``weights_only=True``). Imported only by those backends, so
``engine`` never imports torch."""
