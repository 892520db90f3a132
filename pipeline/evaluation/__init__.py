"""Offline evaluation of signals, safety and routing on ../shared/data."""
