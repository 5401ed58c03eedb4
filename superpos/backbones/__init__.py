"""Frozen backbones: the language models prompts are tuned on (see ``docs/CONTRACTS.md``, "Backbone").

>>> backbone = load_backbone("tiny-t5")                     # doctest: +SKIP
>>> batch = backbone.encode(["great movie"], ["positive"], max_input_tokens=64, max_target_tokens=4)
>>> backbone.loss(batch, method)                            # scalar, target tokens only

Modules, each importing only those listed after it: ``load`` (``load_backbone``: names, local folders, hub ids,
the embedded SmolLM2; ``resolve_device``), ``tiny`` (random test models), ``files`` (atomic cache folders, local
model fingerprints), ``core`` (``Backbone``: the model, its tokenizer and basic facts, encoding, the dropout
switch), ``generation`` (greedy decoding), ``loss`` (the target-token loss, per-token losses for packed runs),
``fast`` (the exact fast Llama training loss), ``dropout`` (where a model keeps its dropout), ``batch``
(``Batch``, ``MethodRows``, the ``PromptMethod`` protocol), ``names`` (the registered names), ``precision``
(bf16 where native).
"""
from .batch import IGNORE_INDEX, SEPARATOR, TARGET_PREFIX, Batch, MethodRows, PromptMethod
from .core import Backbone, BackboneError
from .load import hub_reachable, load_backbone, resolve_device, smollm2_folder
from .names import BACKBONES, DEFAULT_BACKBONE, NO_OWN_DROPOUT, PRETRAINED_WITHOUT_DROPOUT, T5_FP16

__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "IGNORE_INDEX", "NO_OWN_DROPOUT", "PRETRAINED_WITHOUT_DROPOUT",
           "SEPARATOR", "T5_FP16", "TARGET_PREFIX", "Backbone", "BackboneError", "Batch", "MethodRows",
           "PromptMethod", "hub_reachable", "load_backbone", "resolve_device", "smollm2_folder"]
