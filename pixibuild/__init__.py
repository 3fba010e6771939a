"""pixibuild: a pixi project to a pixi-pack archive, an installed env and an OCI image.

The library is plain Python and never imports doit: `rules/` declares the task graph over it.
"""

__version__ = "0.1.0"
