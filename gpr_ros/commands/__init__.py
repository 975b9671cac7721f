"""Subcommands of the ``gpr-ros`` CLI, one module per group (each exposes ``register``)."""
