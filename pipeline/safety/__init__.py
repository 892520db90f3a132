"""Safety: detectors (PII, jailbreak) and the policy that turns findings into an action."""
