"""Learning: fold feedback and outcomes into the router's per-arm evidence."""
