"""CLI subcommands, one module each (`pixibuild.cli.COMMANDS` maps each command name to its module)."""
