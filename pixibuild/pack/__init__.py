"""The pixi-pack archive: index node (repodata.json per subdir) and archive node (environment.tar)."""
