"""Daemonless OCI/Docker images: layers, config/manifest, layouts, registry client."""
