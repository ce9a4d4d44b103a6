"""Command-line interface: ``euclidnn <command> ...`` (see ``euclidnn --help``)."""
