"""Subcommands of the ``medseg`` CLI; each module defines ``register(subparsers)``."""
