"""What the fork server imports once, so each point's fresh process starts with it already in memory.

Only modules that start no thread at import are listed: a process forked from one with live threads can
deadlock on their locks. (Checked: torch, transformers and its BERT/GPT-2/Llama models start none with
OPENBLAS_NUM_THREADS=1; onnxruntime starts one at import, so it is not preloaded.)

What the imports print (torchao's optional kernels, torch's deprecation notes) would land on the user's
terminal, since the server shares it; it is discarded. A child that imports something itself writes to its
own log as before.
"""

import os

_saved = os.dup(1), os.dup(2)
_null = os.open(os.devnull, os.O_WRONLY)
os.dup2(_null, 1)
os.dup2(_null, 2)
try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers.models.bert import modeling_bert  # noqa: F401
    from transformers.models.gpt2 import modeling_gpt2  # noqa: F401
    from transformers.models.llama import modeling_llama  # noqa: F401

    from ..backends import backends
    from ..models import model_sources
    from ..scenarios import scenarios
    from ..variants import transforms
    from . import child  # noqa: F401

    for registry in (backends, model_sources, scenarios, transforms):
        registry.names()  # import every registered module now rather than in each child
finally:
    os.dup2(_saved[0], 1)
    os.dup2(_saved[1], 2)
    for fd in (*_saved, _null):
        os.close(fd)
