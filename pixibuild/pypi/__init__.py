"""PyPI sources → wheels: local trees, sdists and git checkouts built with PEP 517 (PyPA `build`)."""
