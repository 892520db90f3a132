"""Pool (P): endpoint choice inside a pool, the HTTP client, and the vLLM-like simulator."""
