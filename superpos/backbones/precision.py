"""Which floating-point type a run computes in: ``auto`` picks bfloat16 only where the hardware runs it natively.

bfloat16 halves memory traffic and, on hardware with bf16 units, multiplies matmul throughput (measured on a
2-core AMD EPYC with ``avx512_bf16``: 2048³ ``torch.mm`` 96 GFLOP/s fp32 against 376 bf16). Without those units
the same call is *slower* than fp32 (measured on an AVX2-only EPYC: 151 GFLOP/s fp32 against under 1 bf16, a
400×576 by 576×1536 linear 167 against 18): PyTorch then emulates bf16. So ``auto`` asks PyTorch's own probes
instead of assuming.

What runs in the chosen type: the frozen backbone's weights, its forward and backward. What stays float32 in
every case: the trainable parameters and their AdamW state (every method builds them in float32 and casts the
prompt to the backbone's type where it is injected), and the loss (cross-entropy on float32 logits).
Full fine-tuning trains the backbone itself, so its weights stay float32 and bf16 enters through autocast.
"""
from __future__ import annotations

import os

import torch

#: ``RunConfig.dtype`` values. ``auto`` resolves per machine with :func:`resolve_precision`.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

#: Environment variable that sets what ``auto`` resolves to, instead of the probe: to extend or check a reference
#: made on another kind of machine (e.g. ``fp32`` on a CPU with bf16 units, for a reference made without them).
#: ``auto`` keeps a run's hash, so such runs are the reference's runs; the record names the variable.
AUTO_DTYPE_VARIABLE = "SUPERPOS_AUTO_DTYPE"


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """``(supported, why)``: whether ``device`` executes bfloat16 matmuls natively, and the evidence."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{torch.cuda.get_device_name(device)} has bf16 tensor cores"
        return False, f"{torch.cuda.get_device_name(device)} has no native bf16"
    if device.type == "cpu":
        if torch.cpu._is_amx_tile_supported():
            return True, "CPU with AMX tiles (native bf16 matmul)"
        if torch.cpu._is_avx512_bf16_supported():
            return True, "CPU with avx512_bf16 (native bf16 matmul)"
        return False, "CPU without avx512_bf16 or AMX: bf16 would be emulated, slower than fp32"
    return False, f"{device.type}: no bf16 probe, fp32 is the safe choice"


def resolve_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """``(dtype, reason)`` for a run: ``requested`` unless it is ``auto``, which gives ``bf16`` where
    :func:`native_bf16` says so and ``fp32`` elsewhere. The reason goes into the run's record."""
    if requested not in PRECISIONS:
        raise ValueError(f"dtype: must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    forced = os.environ.get(AUTO_DTYPE_VARIABLE, "")
    if requested != "auto":
        chosen, why = requested, "asked for explicitly"
    elif forced:
        if forced not in PRECISIONS[1:]:
            raise ValueError(f"{AUTO_DTYPE_VARIABLE}: must be one of {', '.join(PRECISIONS[1:])} or unset, "
                             f"got {forced!r}")
        chosen, why = forced, f"auto: {AUTO_DTYPE_VARIABLE}={forced}"
    else:
        supported, evidence = native_bf16(device)
        chosen, why = ("bf16" if supported else "fp32"), f"auto: {evidence}"
    if chosen == "fp16" and device.type != "cuda":
        raise ValueError(f"dtype: fp16 runs on CUDA only ({device.type} here; {why}); use bf16 or fp32")
    if chosen == "fp16":  # training without loss scaling: small prompt gradients underflow to 0 in fp16
        raise ValueError(f"dtype: fp16 trains without a gradient scaler here, and a prompt's small gradients underflow "
                         f"in fp16 ({why}); use bf16 (native on A100/H100-class GPUs) or fp32")
    return chosen, why
