"""Models: the ONNX sentence encoder every learned signal shares."""
