"""OpenAI-compatible HTTP endpoints as systems under test: the client, a server launcher and a null server."""
