"""Workload (W): what a request is, from its structure and its text."""
