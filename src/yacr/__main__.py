"""`python -m yacr`."""

from yacr.cli import entrypoint

entrypoint()
