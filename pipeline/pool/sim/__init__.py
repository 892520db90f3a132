"""The vLLM-like pool simulator and the fleet what-if (lab code, never imported by the runtime):
an engine model of continuous batching on a GPU, OpenAI-compatible simulated endpoints
(``wrp sim``), serving traces as timed requests, and fleets of engines on a virtual clock
(``wrp sim fleet``, ``wrp bench pools``)."""
