"""Trust drills (lab code, never imported by the runtime): hostile records, restarts and PII
driven through a running embedded stack, each returning a report of what was tried, lost,
duplicated or found at rest. ``wrp drill NAME`` runs one at full size on a stack of its own;
``tests/integration/test_trust_drills.py`` runs them smaller in ``make test``."""
