"""How many bytes a model's weights occupy, whatever tensor types its transforms left behind."""

from __future__ import annotations

from typing import Any

WEIGHT_BYTES_METHOD = ("unique storages of the state_dict tensors (quantized tensors: int data plus scales and "
                       "zero points; tensor subclasses: their inner tensors; tied weights once)")


def _tensor_bytes(obj: Any, seen: set) -> int:
    import torch
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass

    if isinstance(obj, (tuple, list)):
        return sum(_tensor_bytes(o, seen) for o in obj)
    if isinstance(obj, dict):
        return sum(_tensor_bytes(o, seen) for o in obj.values())
    if not isinstance(obj, torch.Tensor):
        return 0
    if is_traceable_wrapper_subclass(obj):  # torchao tensors: count what they hold, not the logical shape
        names, _ = obj.__tensor_flatten__()
        return sum(_tensor_bytes(getattr(obj, n), seen) for n in names)
    if obj.layout in (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc):
        by_row = obj.layout in (torch.sparse_csr, torch.sparse_bsr)
        compressed, plain = ((obj.crow_indices(), obj.col_indices()) if by_row
                             else (obj.ccol_indices(), obj.row_indices()))
        # a sparse tensor has no storage of its own; its arrays may be views of a larger conversion buffer (the COO
        # indices behind col_indices), so count what the format holds
        return sum(t.nbytes for t in (compressed, plain, obj.values()))
    if obj.layout == torch.sparse_coo:
        return obj._indices().nbytes + obj._values().nbytes
    total = 0
    if obj.is_quantized:
        if obj.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric,
                             torch.per_channel_affine_float_qparams):
            total += _tensor_bytes([obj.q_per_channel_scales(), obj.q_per_channel_zero_points()], seen)
        else:
            total += 8 + 8  # one double scale, one int64 zero point
    key = storage_key(obj)
    if key[0] == 0 or key in seen:
        return total
    seen.add(key)
    return total + key[1]


def storage_key(t: Any) -> tuple[int, int, str]:
    """(address, bytes, device) of a dense tensor's storage: tensors that share one (tied weights) share it."""
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.nbytes(), t.device.type


def weight_bytes(model: Any) -> int:
    """Bytes the weights occupy: every state_dict tensor's storage once (see WEIGHT_BYTES_METHOD).

    Correct for torchao tensor subclasses (inner tensors), torch.ao packed params (the int8 weight and
    its scales, unpacked through the state dict), aten-packed int4/int8 buffers and tied weights. It is the
    logical quantized size: kernel-private copies are not visible to it (measured by RSS here, oneDNN's
    packed params hold about one int8 copy more than fbgemm's); peak RSS is the figure for those.
    """
    return _tensor_bytes(list(model.state_dict().values()), set())


def lookup_table_bytes(model: Any) -> int:
    """Bytes of embedding tables a query reads only a few rows of (nn.Embedding weights shared with no other
    tensor): a roofline that counted them as streamed would overstate the bandwidth a decoder achieves. A table
    tied to the LM head is read whole by the head, so it stays in."""
    import torch

    tables = {f"{name}.weight": m.weight for name, m in model.named_modules() if isinstance(m, torch.nn.Embedding)}
    # quantized, sparse and tensor-subclass weights are never an embedding's float storage: dense tensors suffice
    shared = {storage_key(t) for name, t in model.state_dict(keep_vars=True).items()
              if name not in tables and type(t) in (torch.Tensor, torch.nn.Parameter) and not t.is_quantized
              and t.layout == torch.strided}
    return _tensor_bytes([t for t in tables.values() if storage_key(t) not in shared], set())


def serialized_bytes(model: Any) -> int:
    """Bytes of `torch.save(model.state_dict())`: the on-disk size, a cross-check of weight_bytes."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()
