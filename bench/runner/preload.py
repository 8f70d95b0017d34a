"""What the fork server imports once, so each point's fresh process starts with it already in memory.

Only modules that start no thread at import are listed: a process forked from one with live threads can
deadlock on their locks. (Checked: torch, transformers and its BERT/GPT-2/Llama models start none with
OPENBLAS_NUM_THREADS=1; onnxruntime starts one at import, so it is not preloaded.)
"""

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
