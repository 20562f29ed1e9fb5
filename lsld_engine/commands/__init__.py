"""Subcommands of the ``lsld-engine`` CLI (one module each)."""
