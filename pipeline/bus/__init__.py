"""Kafka plumbing in small named parts: the stage API (``stage``), the runner's lifecycle and
loop (``runner``) and its steps (``fetch``, ``admission``, ``processing``, ``produce``,
``offsets``), dead letters, fused stages, the client factory (``clients``) with its in-memory
broker (``memory``), the embedded broker, topic admin and the catalog."""
