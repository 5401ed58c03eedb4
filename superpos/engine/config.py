"""``RunConfig``: everything that decides one run's result, and nothing that does not."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from ..backbones.precision import PRECISIONS
from ..config import ConfigBase, option, require, stable_hash
from ..suggest import did_you_mean
from ..tasks.base import PROTOCOLS  # the one definition: superpos.tasks.base.Protocol

# Fields that change where or how fast a run goes, not what it computes: left out of the hash.
NOT_HASHED = ("device",)
#: Part of every run hash. Bump it with any fix that changes what a run computes (its scores, curves or
#: prompt), so that records made by older code are never served as if they were current: they stay in the
#: store under their old hash, and the run trains again. History: 1 = first release; 2 = dtype "auto"; 3 = dev and
#: test examples fixed whatever the seed, max_steps overrides epochs, a valid point beats a † one, lenient 0 when
#: no prediction is valid, BBC suite v2.
CODE_VERSION = 3


@dataclasses.dataclass
class RunConfig(ConfigBase):
    """One training run: backbone x task x method (+ its config) x dropout x seed x budget."""

    backbone: str = option("smollm2-135m", help="Backbone name (`python -m superpos list`), hub id or local folder.")
    task: str = option("bbc-topic", help="Task name (`python -m superpos list`).")
    method: str = option("superpos", help="Prompt method name (`python -m superpos list`).")
    method_config: dict = option({}, help="Overrides of the method's config; defaults are the paper's (§4.4). "
                                          "A dict ({} for none; None is refused).")
    dropout: bool = option(False, help="Keep the frozen network's dropout on (the paper's ✓ rows) or remove it (✗).")
    dropout_rate: float | None = option(None, minimum=0, help="Dropout rate for backbones pretrained without one (SmolLM2).")
    seed: int = option(0, help="Seeds prompt sampling, data order and dropout.")
    epochs: int = option(1, minimum=1, help="Passes over the training split (the paper: 80); max_steps, when given, overrides it.")
    max_steps: int | None = option(None, minimum=1, help="Train exactly this many optimizer steps, cycling the data as needed (overrides epochs, as in Hugging Face).")
    batch_size: int = option(8, minimum=1, help="Training examples per step (the paper does not state it; 32 is common).")
    eval_every: int = option(0, minimum=0, help="Evaluate every k steps; 0 evaluates at the end of every epoch.")
    eval_batch_size: int = option(32, minimum=1, help="Examples per generation batch at evaluation.")
    protocol: str = option("paper", choices=PROTOCOLS, help="'paper': select and report on validation; 'heldout': select on dev, report test.")
    train_limit: int | None = option(None, minimum=1, help="Use only the first k training examples (after a seeded shuffle).")
    eval_limit: int | None = option(None, minimum=2, help="Use at most k dev examples (under 'paper', where dev is test, both), "
                                                          "the same k for every seed.")
    test_limit: int | None = option(None, minimum=2, help="'heldout' only: use at most k test examples, the same k for every "
                                                          "seed (None: all).")
    max_input_tokens: int = option(256, minimum=8, help="Inputs are truncated to this many tokens before the prompt is prepended.")
    device: str = option("auto", help="'cpu', 'cuda' or 'auto' (cuda when present). Not part of the run hash.")
    dtype: str = option("auto", choices=PRECISIONS, help="'auto' (bf16 where the device runs it natively, else fp32), 'fp32', 'bf16' or "
                                     "'fp16' (refused: no gradient scaler; T5 overflows in it). Trainable parameters, their "
                                     "optimizer state and the loss stay fp32 whatever this says.")
    sources: list = option([], help="ATTEMPT: run hashes of the source-prompt runs this run depends on.")

    def __post_init__(self):
        super().__post_init__()  # every field has its annotated type (bool, int, ...) from here on
        for index, source in enumerate(self.sources):
            require(isinstance(source, str), "sources", f"entry {index} must be a run hash (a string), got {source!r}")
        for key in self.method_config:
            require(isinstance(key, str), "method_config", f"field names must be strings, got {key!r}")
        # each field's own choices and bounds are checked from its option(); here what spans fields or patterns
        require(self.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", self.device) is not None, "device",
                f"must be 'auto', 'cpu' or 'cuda[:i]', got {self.device!r}")
        require(self.dropout_rate is None or self.dropout_rate < 1.0, "dropout_rate", "must be in [0, 1)")
        require(self.method != "attempt" or len(self.sources) >= 1, "sources",
                "ATTEMPT needs at least one source-prompt run (run hashes)")
        require(self.method == "attempt" or not self.sources, "sources", "only ATTEMPT takes source prompts")
        require(self.test_limit is None or self.protocol == "heldout", "test_limit",
                "applies to the 'heldout' protocol only (under 'paper' the test set is the dev set: use eval_limit)")

    def resolved(self) -> "RunConfig":
        """A copy whose ``method_config`` holds every field of the method's config (defaults filled in).

        Raises ``ValueError`` naming the field for an unknown task/method/backbone or a bad method field.
        """
        from ..methods import METHODS
        from ..tasks import TASKS, canonical_name

        try:  # a display spelling ("SST-2", "BBC-Topic") names the same task, and so the same run
            task = canonical_name(self.task)
        except ValueError:
            raise ValueError(f"task: unknown task {self.task!r}{did_you_mean(self.task, TASKS)}; "
                             f"known: {', '.join(TASKS)}") from None
        require(self.method in METHODS, "method",
                f"unknown method {self.method!r}{did_you_mean(self.method, METHODS)}; known: {', '.join(METHODS)}")
        check_backbone_name(self.backbone)
        from ..backbones.load import NO_OWN_DROPOUT, PRETRAINED_WITHOUT_DROPOUT, T5_FP16

        require(not (self.dropout and self.dropout_rate is None and self.backbone in PRETRAINED_WITHOUT_DROPOUT),
                "dropout_rate", NO_OWN_DROPOUT.format(name=self.backbone))
        require(not (self.dtype == "fp16" and "t5" in self.backbone.lower()), "dtype", T5_FP16)
        config_cls = METHODS[self.method][0]
        method_config = config_cls.from_dict(dict(self.method_config)).to_dict()
        return dataclasses.replace(self, task=task, method_config=method_config)

    def splits(self):
        """The run's :class:`~superpos.tasks.Splits`: the training sample drawn with the run seed; dev and test fixed
        by ``EVAL_SEED``, the same for every seed (``protocol``, ``train_limit``, ``eval_limit``, ``test_limit``)."""
        from ..tasks import EVAL_SEED, get_task

        return get_task(self.task).splits(self.protocol, seed=EVAL_SEED).limit(
            self.train_limit, self.eval_limit, self.seed, test_limit=self.test_limit)

    def run_hash(self) -> str:
        """Stable hash of the resolved config (without the fields in ``NOT_HASHED``) and ``CODE_VERSION``; a
        registered task's rows, a GLUE/SuperGLUE task's local release files and a local model folder's contents
        enter it too (built-in names and hub ids: the name decides)."""
        from ..backbones.files import local_model_fingerprint
        from ..tasks import task_fingerprint
        from ..tasks.loading import local_data_fingerprint

        payload = {k: v for k, v in self.resolved().to_dict().items() if k not in NOT_HASHED}
        data = task_fingerprint(self.task) or local_data_fingerprint(self.task)
        if data is not None:
            payload["task_data"] = data
        model = local_model_fingerprint(self.backbone)
        if model is not None:  # a local model folder: what it holds, however its path is spelled
            payload["backbone"] = model
        return stable_hash({**payload, "code_version": CODE_VERSION})

    def label(self) -> str:
        """A short human-readable name for progress bars: the prompt length, the fields that name the method's
        variants (its registration's ``variant_fields``) and ``vocab_top_k`` when set."""
        from ..methods import METHODS

        named = ("n_prompts", *(METHODS[self.method].variant_fields if self.method in METHODS else ()))
        extra = "".join(f" {k}={v}" for k, v in sorted(self.method_config.items())
                        if k in named or (k == "vocab_top_k" and v is not None))
        return f"{self.task}/{self.method}{extra} dropout={'on' if self.dropout else 'off'} seed={self.seed}"


def check_backbone_name(name: str) -> None:
    """Registered names, hub-shaped ids and folders holding a saved model (a ``config.json`` with a
    ``model_type``, and weights) pass; anything else fails in one line."""
    from ..backbones import BACKBONES
    from ..backbones.files import model_folder_problem

    require(bool(name.strip()), "backbone", "must name a backbone, got an empty string")
    if name in BACKBONES:
        return
    if Path(name).expanduser().is_dir():
        problem = model_folder_problem(name)  # garbage config.json, no weights: now, not when the model loads
        require(problem is None, "backbone", str(problem))
        return
    if "/" in name or (name.startswith("t5-") and not did_you_mean(name, BACKBONES, cutoff=0.8)):  # t5-smal: a typo
        return
    raise ValueError(f"backbone: unknown backbone {name!r}{did_you_mean(name, BACKBONES)}; known: "
                     f"{', '.join(BACKBONES)}, a hub id or a local folder")


def as_run_config(value: RunConfig | dict[str, Any]) -> RunConfig:
    return value if isinstance(value, RunConfig) else RunConfig.from_dict(value)
