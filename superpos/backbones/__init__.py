"""Frozen backbones: the language models prompts are tuned on (see ``docs/CONTRACTS.md``, "Backbone").

>>> backbone = load_backbone("tiny-t5")                     # doctest: +SKIP
>>> batch = backbone.encode(["great movie"], ["positive"], max_input_tokens=64, max_target_tokens=4)
>>> backbone.loss(batch, method)                            # scalar, target tokens only

Modules: ``core`` (``Backbone``, ``Batch``: encode, loss, generation, dropout), ``load`` (names, local
folders, hub ids, the embedded SmolLM2), ``tiny`` (random test models), ``files`` (atomic cache folders).
"""
from .core import IGNORE_INDEX, SEPARATOR, TARGET_PREFIX, Backbone, BackboneError, Batch, MethodRows, PromptMethod
from .load import BACKBONES, DEFAULT_BACKBONE, hub_reachable, load_backbone, smollm2_folder

__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "IGNORE_INDEX", "SEPARATOR", "TARGET_PREFIX", "Backbone",
           "BackboneError", "Batch", "MethodRows", "PromptMethod", "hub_reachable", "load_backbone", "smollm2_folder"]
