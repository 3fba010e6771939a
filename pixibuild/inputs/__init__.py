"""What the user gives us: pixi.lock and pixi.toml/pyproject.toml, read into records and targets
(`Project`), and the `--locked` check that the lock still satisfies the manifest."""
