"""Torch-stage transforms: int8 and int4 quantization of Linear layers, and the TF32 matmul switch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..config import NoOptions
from ..devices import get_device
from ..errors import Unsupported
from . import Transform, transforms


class _LinearOptions(NoOptions):
    skip_lm_head: bool = Field(True, description="keep the output projection in float (GPT-2 class models are fragile)")


@transforms.register("int8-dynamic")
class Int8Dynamic(Transform):
    """int8 weights and dynamically quantized int8 activations on Linear layers."""

    class Options(_LinearOptions):
        per_channel: bool = Field(False, description="per-channel weight scales: more accurate, slower kernels here")
        skip_modules: list[str] = Field(default_factory=list, description="keep layers whose name contains these in float")
        api: Literal["torch.ao", "torchao"] = Field(
            "torch.ao", description="torch.ao: the fast eager kernels; torchao: tensor subclasses torch.compile lowers")

    def apply(self, model, options, ctx):
        from . import torch_quant

        if ctx.device != "cpu":
            raise Unsupported("int8-dynamic uses CPU int8 kernels; on CUDA use weight-only or ORT variants")
        return torch_quant.dynamic_int8(model, options.skip_lm_head, options.per_channel, tuple(options.skip_modules),
                                        api=options.api, cpu_flags=ctx.cpu_flags)

    def compute_precision(self, options, precision):
        return "int8"

    def describe(self, options):
        return "int8 dynamic" + (" (torchao)" if options.api == "torchao" else "") + \
            (", per-channel" if options.per_channel else "") + \
            (f", {'/'.join(options.skip_modules)} in float" if options.skip_modules else "")


@transforms.register("int8-weight-only")
class Int8WeightOnly(Transform):
    Options = _LinearOptions

    def apply(self, model, options, ctx):
        from . import torch_quant

        return torch_quant.weight_only_int8(model, skip_lm_head=options.skip_lm_head)

    def describe(self, options):
        return "int8 weights, float compute"


@transforms.register("int4-weight-only")
class Int4WeightOnly(Transform):
    class Options(NoOptions):
        group_size: Literal[32, 64, 128] = 128

    def apply(self, model, options, ctx):
        from . import torch_quant

        return torch_quant.weight_only_int4(model, group_size=options.group_size, device=ctx.device,
                                            cpu_flags=ctx.cpu_flags)

    def compute_precision(self, options, precision):
        return "bf16"  # the int4 kernels take bf16 activations (torch_quant.weight_only_int4)

    def describe(self, options):
        return f"int4 weights (group {options.group_size}), bf16 compute"


@transforms.register("tf32")
class Tf32(Transform):
    """Allow TF32 tensor-core matmuls for fp32 on CUDA (Ampere and newer)."""

    kind = "precision"

    def apply(self, model, options, ctx):
        get_device(ctx.device).check_precision("tf32", frozenset(ctx.cpu_flags))
        from . import torch_quant

        return model, torch_quant.tf32_matmul(True)

    def compute_precision(self, options, precision):
        return "tf32"

    def describe(self, options):
        return "TF32 matmuls"
