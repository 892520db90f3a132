"""`wrp policy check`: a policy file's own problems and those of what it names outside itself.

The policy's own check (:func:`pipeline.policy.check.check_file`) with the domains' checks: the
secrets a pool's ``auth`` names that this environment lacks, by name
(:mod:`pipeline.pool.credential_findings`), and the success predictor decisions of strategy
``predicted`` read (:mod:`pipeline.router.predictor_findings`).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.policy import check
from pipeline.pool.credential_findings import credential_findings
from pipeline.router.predictor_findings import predictor_findings

#: The checks of what a policy names outside the file, in the order their findings are listed.
CHECKS: tuple[check.PolicyCheck, ...] = (predictor_findings, credential_findings)


def check_policy(path: Path | str) -> list[check.Finding]:
    """Every problem of the policy file at ``path`` and of what it names, errors first, each
    with its line."""
    return check.check_file(path, checks=CHECKS)
