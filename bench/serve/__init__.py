"""`bench serve`: any of the harness's variants as an OpenAI-compatible HTTP server, over an engine of
bench/serving/engines (app.py: the HTTP side; variant.py: the model, prepared as a point's child prepares it;
metrics.py: what GET /metrics counts). Needs FastAPI and uvicorn (`pip install -e ".[serve]"`)."""
