"""The application: command line, daemon wiring, subcommands, systemd notify."""
