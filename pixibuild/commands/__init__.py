"""CLI subcommands, one module each (see `pixibuild.cli.COMMANDS`)."""
