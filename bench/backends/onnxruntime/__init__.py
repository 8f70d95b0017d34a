"""The ONNX Runtime engine, in one package: export (`export`, the KV-cache decoder in `decoder`), sessions on
its execution providers (`session`), the backend (`backend`), the graph operations (`graph/`) and the
graph-stage transforms built on them (`transforms`, found by the transform registry)."""
