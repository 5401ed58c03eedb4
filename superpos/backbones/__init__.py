"""Frozen backbones: the language models prompts are tuned on (see ``docs/CONTRACTS.md``, "Backbone").

>>> backbone = load_backbone("tiny-t5")                     # doctest: +SKIP
>>> batch = backbone.encode(["great movie"], ["positive"], max_input_tokens=64, max_target_tokens=4)
>>> backbone.loss(batch, method)                            # scalar, target tokens only

Modules: ``core`` (``Backbone``: the model, its tokenizer and basic facts, composed of the four below),
``batch`` (``Batch``, ``MethodRows``, the ``PromptMethod`` protocol), ``encoding`` (tokenize, truncate, pad;
the vocabulary), ``loss`` (the target-token loss, per-token losses for packed runs), ``generation`` (greedy
decoding), ``dropout`` (the frozen network's dropout switch), ``fast`` (the exact fast Llama training loss),
``load`` (names, local folders, hub ids, the embedded SmolLM2), ``precision`` (bf16 where native), ``tiny``
(random test models), ``files`` (atomic cache folders).
"""
from .batch import IGNORE_INDEX, SEPARATOR, TARGET_PREFIX, Batch, MethodRows, PromptMethod
from .core import Backbone, BackboneError
from .load import BACKBONES, DEFAULT_BACKBONE, hub_reachable, load_backbone, smollm2_folder

__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "IGNORE_INDEX", "SEPARATOR", "TARGET_PREFIX", "Backbone",
           "BackboneError", "Batch", "MethodRows", "PromptMethod", "hub_reachable", "load_backbone", "smollm2_folder"]
