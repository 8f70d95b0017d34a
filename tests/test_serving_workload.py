"""Workloads: seeded, the same for every tokenizer object, lengths as specified, prompts of real text."""

from __future__ import annotations

import re
from statistics import median

import pytest
from pydantic import TypeAdapter, ValidationError

from bench.models.inputs import token_stream
from bench.models.sources import stand_in_tokenizer
from bench.models.text import reference_text
from bench.serving.workload import NormalLength, OutputLength, PromptLength, UniformLength, build_requests


@pytest.fixture(scope="module")
def tokenizer():
    return stand_in_tokenizer()[0]  # the packaged MiniLM WordPiece tokenizer: real, offline


def test_same_seed_gives_the_same_requests_across_calls_and_tokenizer_objects(tokenizer):
    spec = {"count": 12, "prompt_tokens": UniformLength(min=8, max=64), "output_tokens": 16, "seed": 7}
    first = build_requests(tokenizer, **spec)
    assert build_requests(tokenizer, **spec) == first
    assert build_requests(stand_in_tokenizer()[0], **spec) == first
    assert [r.index for r in first] == list(range(12))


def test_another_seed_gives_other_requests(tokenizer):
    spec = {"count": 12, "prompt_tokens": UniformLength(min=8, max=64), "output_tokens": UniformLength(min=1, max=9)}
    first, second = build_requests(tokenizer, seed=1, **spec), build_requests(tokenizer, seed=2, **spec)
    assert [r.prompt_ids for r in first] != [r.prompt_ids for r in second]
    assert [r.output_tokens for r in first] != [r.output_tokens for r in second]


def test_changing_the_output_spec_leaves_the_prompts_alone(tokenizer):
    short = build_requests(tokenizer, 10, UniformLength(min=8, max=64), 4, seed=3)
    long = build_requests(tokenizer, 10, UniformLength(min=8, max=64), NormalLength(mean=100, stdev=9, min=1, max=200),
                          seed=3)
    assert [r.prompt_ids for r in short] == [r.prompt_ids for r in long]


def test_fixed_lengths(tokenizer):
    requests = build_requests(tokenizer, 20, 32, 16, seed=0, ignore_eos=False)
    assert {len(r.prompt_ids) for r in requests} == {32} and {r.output_tokens for r in requests} == {16}
    assert not any(r.ignore_eos for r in requests)


def test_normal_lengths_are_rounded_clipped_and_centred(tokenizer):
    spec = NormalLength(mean=64, stdev=40, min=16, max=96)
    lengths = [len(r.prompt_ids) for r in build_requests(tokenizer, 400, spec, 1, seed=0)]
    assert min(lengths) == 16 and max(lengths) == 96  # a stdev this wide reaches both clips
    assert abs(median(lengths) - 64) <= 8


def test_uniform_lengths_cover_their_range_inclusive(tokenizer):
    outputs = [r.output_tokens for r in build_requests(tokenizer, 200, 4, UniformLength(min=0, max=4), seed=0)]
    assert set(outputs) == {0, 1, 2, 3, 4}


def test_prompts_are_windows_of_real_text(tokenizer):
    requests = build_requests(tokenizer, 8, 48, 4, seed=5)
    text = reference_text().lower()
    stream = token_stream(tokenizer, 16384)
    for request in requests:
        assert request.prompt_text == tokenizer.decode(list(request.prompt_ids))
        words = re.findall(r"[a-z]{4,}", request.prompt_text)
        assert len(words) >= 5 and sum(word in text for word in words) >= 0.9 * len(words)
        assert any(tuple(stream[i:i + 48]) == request.prompt_ids for i in range(len(stream) - 47))
    assert len({r.prompt_ids for r in requests}) == 8  # different offsets


@pytest.mark.parametrize("value, kind", [(5, int), ({"min": 1, "max": 5}, UniformLength),
                                         ({"mean": 9, "stdev": 2, "min": 1, "max": 20}, NormalLength)])
def test_length_specs_parse_from_suite_values(value, kind):
    assert isinstance(TypeAdapter(PromptLength).validate_python(value), kind)


@pytest.mark.parametrize("adapter, value", [(PromptLength, 0), (PromptLength, {"min": 0, "max": 3}),
                                            (OutputLength, -1), (OutputLength, {"min": 5, "max": 3}),
                                            (OutputLength, {"mean": 5, "min": 1, "max": 9})])
def test_bad_length_specs_are_refused(adapter, value):
    with pytest.raises(ValidationError):
        TypeAdapter(adapter).validate_python(value)


def test_embedding_requests_ask_for_no_output(tokenizer):
    assert {r.output_tokens for r in build_requests(tokenizer, 3, 16, 0, seed=0)} == {0}
