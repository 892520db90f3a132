"""The demo (lab code, never imported by the runtime): ``wrp demo`` runs the whole pipeline on a
sample workload on an embedded stack and reports."""
