"""The experiment engine: run configs, train and evaluate, store records, run grids, load results."""
from .config import RunConfig
from .frame import Record
from .grid import GridSpec, expand, run_configs, run_grid
from .record import GridResult
from .results import load_records, open_store
from .store import ResultsStore, StoreError
from .train import RunError
from .train import run as _run


def run(config, store, **options) -> Record:
    """Run ``config`` unless ``store`` already has it; its :class:`Record` (``record.best.test.score``,
    ``record["cached"]``). Options and behaviour: :func:`superpos.engine.train.run`."""
    return Record(_run(config, store, **options))

__all__ = ["Record", "RunConfig", "GridSpec", "GridResult", "ResultsStore", "StoreError", "RunError", "run", "run_grid",
           "expand", "run_configs", "load_records", "open_store"]
