"""The ``trading`` command line (typer). Each module adds one group of commands."""
