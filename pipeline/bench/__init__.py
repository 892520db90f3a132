"""Benchmarks (lab code, never imported by the runtime): ``wrp bench TARGET`` measures one part
of WRP (the pipeline's overhead, the envelope against a peer router, classification, the gateway,
the analytics sink, budgets, answer screening, pool selection on traces) and reports JSON."""
