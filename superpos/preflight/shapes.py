"""Run shapes, and the engine's pieces that build, step, time and evaluate one packed group of a shape."""
from __future__ import annotations

import copy
import dataclasses
import gc
import time


@dataclasses.dataclass
class Shape:
    """Runs that cost the same per step: one backbone, method, prompt length, input length and group size."""

    backbone: str
    method: str
    prompt_tokens: int
    input_tokens: int
    group: int
    configs: list = dataclasses.field(default_factory=list)
    # measured (None until measured; ``failed`` says why it was not)
    step_s: float | None = None
    eval_s_per_example: float | None = None
    build_s: float = 0.0
    failed: str | None = None

    @property
    def label(self) -> str:
        short = self.backbone.rsplit("/", 1)[-1]
        return f"{short} {self.method} {self.input_tokens}+{self.prompt_tokens} x{self.group}"


def prompt_tokens(config) -> int:
    return int(config.method_config.get("n_prompts", 0) or 0)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, fn) -> float:
    sync(device)
    started = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - started


def release(device) -> None:
    """Give the memory of dropped models back, so that the next shape's peak is its own."""
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def fake_sources(config, backbone):
    """ATTEMPT's source prompts ``[k, n, d]`` with the scale of the embeddings (their values cost nothing)."""
    import torch

    if config.method != "attempt":
        return None
    scale = float(backbone.embedding_weight.detach().float().std())
    generator = torch.Generator().manual_seed(config.seed)
    return torch.randn(len(config.sources), prompt_tokens(config), backbone.embed_dim, generator=generator) * scale


def group_trainers(config, size: int, backbone, store) -> list:
    """``size`` Trainers of ``config`` on one shared backbone, seeds ``seed .. seed + size - 1`` (own prompts, own
    data order, so their batches pad as a real group's do). The data is loaded once and shared."""
    from ..engine.train import Trainer

    first = Trainer(config, config.run_hash(), store, fake_sources(config, backbone), progress=False,
                    backbone=backbone)
    trainers = [first]
    for offset in range(1, size):
        twin = copy.copy(first)
        twin.config = dataclasses.replace(config, seed=config.seed + offset)
        twin.run_hash = twin.config.run_hash()
        for key in ("history", "loss_curve", "pending_loss"):
            setattr(twin, key, [])
        twin.build()  # its own method and optimizer, seeded by its own seed, on the shared backbone
        trainers.append(twin)
    return trainers


def stepper(trainers: list):
    """``(group, step)``: one optimizer step of every trainer, as ``fit`` (alone) or ``PackedGroup`` (packed)
    takes it."""
    from ..engine.packed import PackedGroup
    from ..engine.train import NonFiniteLoss

    if len(trainers) == 1:
        trainer = trainers[0]

        def step() -> None:
            loss = trainer.train_step(trainer.batch_at(trainer.step))
            trainer.end_step(loss, 0.0)

        return None, step
    group = PackedGroup(trainers, progress=False)

    def step() -> None:
        failures = group.train_step(trainers)
        if failures:
            raise NonFiniteLoss(next(iter(failures.values())))

    return group, step


def generate_longest(trainers: list, examples: list) -> None:
    """Greedy generation of every trainer over ``examples`` (one evaluation batch each), as evaluation runs it."""
    from ..engine.evaluate import EvalJob, predict_many

    backbone = trainers[0].backbone
    for trainer in trainers:
        trainer.method.eval()
    backbone.model.eval()
    with trainers[0].autocast:
        predict_many(backbone, [EvalJob(t.method, t.task, examples, **t.eval_options()) for t in trainers])
