"""A store's records for readers: :func:`open_store` (a store, a folder or a profile name) and
:func:`load_records` (its records as one DataFrame row each, optionally only a grid's runs)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .frame import records_frame
from .grid import GridSpec, expand
from .store import ResultsStore


def open_store(where: str | Path | ResultsStore) -> ResultsStore:
    """A store from a store, a folder, or a profile name (that profile's working store)."""
    if isinstance(where, ResultsStore):
        return where
    path = Path(where)
    if path.is_dir() or path.is_absolute() or len(path.parts) > 1:
        return ResultsStore(path)
    return ResultsStore(profile=str(where))


def load_records(where: str | Path | ResultsStore, grid=None, *, only_done: bool = False) -> pd.DataFrame:
    """The records in ``where`` (a profile name, a folder or a store) as one row each.

    With ``grid`` (a ``GridSpec`` or dict, or a list of run configs such as
    ``superpos.profiles.profile_configs(profile)``), only those runs; a run without a record is simply absent
    (run it first).
    """
    store = open_store(where)
    records = list(store.records())
    if grid is not None:
        if isinstance(grid, (list, tuple)):
            wanted = {config.run_hash() for config in grid}
        else:
            spec = grid if isinstance(grid, GridSpec) else GridSpec.from_dict(grid)
            wanted = {config.run_hash() for config in expand(spec)}
        records = [record for record in records if record["hash"] in wanted]
    if only_done:
        records = [record for record in records if record["status"] == "done"]
    return records_frame(records)
