"""The OpenAI-compatible front door: HTTP in, Kafka through the pipeline, HTTP out."""
