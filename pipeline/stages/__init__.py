"""Thin stage wiring: consume a topic -> call the domain code -> produce. One module per stage."""
