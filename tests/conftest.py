"""Shared fixtures. The tests never reach the model hub: the offline variables are set for the session
(unless the caller set them), so a stray hub lookup fails at once instead of retrying for ~20 s."""
from __future__ import annotations

import os

import pytest

for _variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_variable, "1")


@pytest.fixture(scope="session")
def tiny_t5():
    """Random T5 v1.1-style backbone (~1M params), dropout off. Tests that change its dropout restore it."""
    from superpos.backbones import load_backbone

    return load_backbone("tiny-t5")


@pytest.fixture(scope="session")
def tiny_llama():
    """Random Llama-style causal backbone (~0.6M params), no dropout."""
    from superpos.backbones import load_backbone

    return load_backbone("tiny-llama")


@pytest.fixture(scope="session")
def smollm2():
    """The embedded default, pretrained SmolLM2-135M-Instruct (first use converts the wheel's GGUF, ~30 s)."""
    from superpos.backbones import load_backbone

    return load_backbone("smollm2-135m")
