"""What the user gives us: pixi.lock and pixi.toml/pyproject.toml, read into records and targets
(`Project`), and the `--locked` check that the lock still satisfies the manifest."""

DEFAULT_ENVIRONMENT = "default"
"""The environment pixi uses when none is named (in manifests, locks and on the command line)."""
