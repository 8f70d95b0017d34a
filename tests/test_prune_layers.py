"""Depth pruning: the pruned model is exactly the model built from the blocks that stay."""

from __future__ import annotations

import copy

import pytest
import torch

from bench.variants import transforms
from bench.variants.pruning.layers import blocks_to_drop


def tiny(kind: str, layers: int):
    from transformers import (BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, LlamaConfig,
                              LlamaForCausalLM)

    torch.manual_seed(0)
    if kind == "gpt2":
        return GPT2LMHeadModel(GPT2Config(n_layer=layers, n_embd=32, n_head=2, vocab_size=100)).eval()
    if kind == "bert":
        return BertModel(BertConfig(num_hidden_layers=layers, hidden_size=32, num_attention_heads=2,
                                    intermediate_size=64, vocab_size=100)).eval()
    return LlamaForCausalLM(LlamaConfig(num_hidden_layers=layers, hidden_size=32, num_attention_heads=4,
                                        num_key_value_heads=2, intermediate_size=64, vocab_size=100)).eval()


def blocks(model):
    from bench.variants.pruning.layout import block_list

    return block_list(model)[1]


@pytest.mark.parametrize("kind", ["gpt2", "bert", "llama"])
def test_removing_blocks_equals_the_model_of_the_blocks_that_stay(kind):
    model = tiny(kind, 4)
    expected = tiny(kind, 2)
    expected.load_state_dict(model.state_dict(), strict=False)  # embeddings, final norm, head
    for mine, theirs in zip(blocks(expected), [blocks(model)[0], blocks(model)[3]]):
        mine.load_state_dict(theirs.state_dict())
    cls = transforms.get("prune-layers")
    pruned, info = cls().apply(copy.deepcopy(model), cls.Options(drop=[1, 2]), None)
    assert info["blocks_before"] == 4 and info["blocks_after"] == 2 and info["removed_blocks"] == [1, 2]
    assert info["params_after"] < info["params_before"]
    ids = torch.randint(0, 100, (2, 12))
    with torch.no_grad():
        got, want = pruned(input_ids=ids), expected(input_ids=ids)
    primary = "logits" if kind != "bert" else "last_hidden_state"
    torch.testing.assert_close(getattr(got, primary), getattr(want, primary))
    if kind != "bert":  # generation with a KV cache still works: layers renumbered, config updated
        out = pruned.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
        ref = expected.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
        assert torch.equal(out, ref)


def test_fraction_spares_the_last_block_and_refuses_removing_all():
    from bench.errors import Unsupported

    assert blocks_to_drop(12, 0.25) == [8, 9, 10]
    assert blocks_to_drop(2, 0.5) == [0]
    cls = transforms.get("prune-layers")
    with pytest.raises(Unsupported, match="at least one must stay"):
        cls().apply(tiny("gpt2", 2), cls.Options(drop=[0, 1]), None)
    assert "25% of blocks" in cls().describe(cls.Options())
