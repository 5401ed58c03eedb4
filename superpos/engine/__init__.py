"""The experiment engine: run configs, train and evaluate, store records, run grids, load results."""
from .config import RunConfig
from .frame import load_records, open_store
from .grid import GridResult, GridSpec, expand, run_configs, run_grid
from .store import ResultsStore, StoreError
from .train import RunError, run

__all__ = ["RunConfig", "GridSpec", "GridResult", "ResultsStore", "StoreError", "RunError", "run", "run_grid",
           "expand", "run_configs", "load_records", "open_store"]
