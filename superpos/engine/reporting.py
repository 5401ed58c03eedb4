"""Live views of a run beside its record: ``report_to="tensorboard"`` writes the loss curve and every evaluation
point as TensorBoard scalars under ``<store>/tensorboard/<run hash>/``.

The record stays the source of every table and figure; this only mirrors what the trainer appends to it, so a
run's record is the same with or without it (and it is not part of the run hash).
"""
from __future__ import annotations

from pathlib import Path

REPORT_TO = ("none", "tensorboard")


class TensorBoardReporter:
    """Scalars ``train/loss`` (each loss-curve point) and ``eval/strict``, ``eval/lenient``, ``eval/invalid_rate``
    (percent) at each evaluation point, against the optimizer step."""

    def __init__(self, folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer needs the tensorboard package
            raise ValueError("report_to: tensorboard needs the tensorboard package "
                             "(pip install 'superpos[tensorboard]')") from None
        self.writer = SummaryWriter(log_dir=str(folder))

    def loss(self, step: int, value: float) -> None:
        self.writer.add_scalar("train/loss", value, step)

    def evaluation(self, point: dict) -> None:
        step = point["step"]
        self.writer.add_scalar("eval/strict", point["score"], step)
        self.writer.add_scalar("eval/lenient", point["lenient_score"], step)
        self.writer.add_scalar("eval/invalid_rate", 100.0 * point["invalid_rate"], step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def check_report_to(report_to: str) -> None:
    """One line for an unknown ``report_to``, before any work."""
    if report_to not in REPORT_TO:
        raise ValueError(f"report_to: unknown value {report_to!r}; choose one of {', '.join(REPORT_TO)}")


def make_reporter(report_to: str, store_root: Path, run_hash: str) -> TensorBoardReporter | None:
    """The reporter ``report_to`` names (``"none"``: None)."""
    check_report_to(report_to)
    if report_to == "tensorboard":
        return TensorBoardReporter(Path(store_root) / "tensorboard" / run_hash)
    return None
