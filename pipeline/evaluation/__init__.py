"""Offline evaluation of signals, safety and routing on ../shared/data, and training of the heads
and the success predictor (lab code, never imported by the runtime)."""
