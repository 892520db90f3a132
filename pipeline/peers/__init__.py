"""Peers WRP is measured against, run in virtualenvs of their own (lab code: nothing in the
runtime imports them, and their dependencies are never WRP's)."""
