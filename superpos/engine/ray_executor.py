"""Hand a grid's runs to Ray: a local Ray instance by default, or a cluster at ``address``.

One Ray task per run, or per packed group of runs (``pack``, see :mod:`superpos.engine.packed`), holding one
CPU slot (``num_cpus=1``) or, when the cluster has GPUs and the run may use one, one GPU (``num_gpus=1``). The worker calls :func:`superpos.engine.train.run` itself, so it
writes its record (and prompt, and checkpoints) through :class:`ResultsStore` atomically; the store
root must therefore be a folder every worker sees (the machine itself for a local Ray, a shared file
system on a cluster). The driver also writes a worker's returned record when the store lacks it, so
the numbers come back even without a shared file system (the exported prompt then stays on the worker).

Failures:

- a run that raises is recorded as ``failed`` (retryable) by the worker and the grid goes on;
- a worker process that dies (OOM kill, segfault, preempted node) is retried by Ray up to
  ``max_retries`` times; a retried run resumes from its last checkpoint (written at every eval point).
  When the retries are spent, the driver writes a ``failed`` record saying so. Every other run's
  record is written by its own worker, so none is lost.

Dependencies: ATTEMPT runs (configs with non-empty ``sources``) are submitted only once every source
run has a ``done`` record; when a source fails, its dependents are recorded as failed without running.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from .config import RunConfig, as_run_config
from .record import GridResult, failed_record
from .store import ResultsStore

#: Environment variables a worker needs to see the same data, cache and offline settings as the driver.
FORWARDED_VARIABLES = ("SUPERPOS_DATA", "SUPERPOS_CACHE", "SUPERPOS_RESULTS", "HF_HUB_OFFLINE",
                       "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "TQDM_DISABLE", "OMP_WAIT_POLICY")
DEFAULT_MAX_RETRIES = 2


def _import_ray():
    try:
        import ray
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("executor: Ray is not installed; install the extra with `pip install -e '.[ray]'` "
                          "or use --executor local") from None
    return ray


def _is_cached(record: dict | None, retry_failed: bool) -> bool:
    """The rule of ``train.run`` (``serves``): a done record of this run, or a failed one not to be retried."""
    from .train import serves

    return serves(record, retry_failed)


def execute_run(config: dict, store_root: str, retry_failed: bool, run_fn: Callable[..., dict] | None = None) -> dict:
    """What a Ray worker does for one run: run it, record it (failed on any exception), return the record."""
    from .train import run as run_one

    store = ResultsStore(Path(store_root))
    config_obj = as_run_config(config)
    try:
        record = (run_fn or run_one)(config_obj, store, retry_failed=retry_failed, progress=False)
    except Exception as error:  # one run's failure must not end the grid
        record = failed_record(config_obj, error)
        store.put(record)
    record = dict(record)
    record["worker"] = {"pid": os.getpid(), "host": os.uname().nodename}
    return record


def execute_group(configs: list[dict], store_root: str, retry_failed: bool) -> list[dict]:
    """What a Ray worker does for a packed group: train it (``run_group``), return the records in order."""
    from .packed import run_group

    store = ResultsStore(Path(store_root))
    try:
        records = run_group(configs, store, retry_failed=retry_failed, progress=False)
    except Exception as error:  # the group could not start: every run fails, retryably
        records = [failed_record(as_run_config(config), error) for config in configs]
        for record in records:
            store.put(record)
    worker = {"pid": os.getpid(), "host": os.uname().nodename}
    return [{**record, "worker": worker} for record in records]


CONNECT_SECONDS = 5.0  # how long a cluster's head may take to accept a connection before it counts as unreachable


def check_reachable(address: str, timeout: float = CONNECT_SECONDS) -> None:
    """One line, within ``timeout`` seconds, when nothing accepts connections at ``address`` (``host:port``,
    ``ray://host:port``; ``auto`` and addresses without a port are left to Ray)."""
    import socket

    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return
    except OSError as error:
        raise ValueError(f"ray: cannot connect to {address} (nothing answered within {timeout:.0f} s: "
                         f"{error.strerror or type(error).__name__})") from None


def _init_ray(ray, address: str | None) -> bool:
    """Connect to ``address`` or start a local Ray; returns True when this call started it (and must stop it)."""
    if ray.is_initialized():
        return False
    env_vars = {name: os.environ[name] for name in FORWARDED_VARIABLES if name in os.environ}
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env_vars}, "log_to_driver": False}
    if address:
        check_reachable(address)  # Ray itself retries an unreachable address for many minutes
        try:
            ray.init(address=address, **kwargs)
        except Exception as error:  # noqa: BLE001 - Ray's own errors are many lines; one says enough
            first = str(error).strip().splitlines()
            raise ValueError(f"ray: cannot connect to {address} ({type(error).__name__}: "
                             f"{first[0] if first else 'no message'})") from None
    else:
        ray.init(include_dashboard=False, **kwargs)
    return True


def _wants_gpu(config: RunConfig, cluster_gpus: float) -> bool:
    return cluster_gpus > 0 and (config.device == "auto" or config.device.startswith("cuda"))


def run_configs_on_ray(configs: Iterable[RunConfig], store: ResultsStore, address: str | None = None,
                       retry_failed: bool = False, progress: bool = True, *, max_retries: int = DEFAULT_MAX_RETRIES,
                       run_fn: Callable[..., dict] | None = None, poll_seconds: float = 1.0,
                       pack: int | None = None) -> GridResult:
    """Run ``configs`` as Ray tasks against ``store``; return the grid's records and counts.

    ``configs`` come in dependency order (``expand`` puts sources first); a config whose ``sources``
    are not all done in the store yet waits until they are. ``run_fn`` replaces ``train.run`` (tests; every run
    alone then). ``pack``: as for ``run_configs``; the runs ready at one time are packed into groups, each one task.
    """
    from tqdm import tqdm  # the plain bar: tqdm.auto wants ipywidgets in a notebook and warns without it

    from .packed import check_pack, plan_units

    check_pack(pack)

    ray = _import_ray()
    configs = [as_run_config(config).resolved() for config in configs]
    store_root = str(Path(store.root).resolve())
    env_vars = {name: os.environ[name] for name in FORWARDED_VARIABLES if name in os.environ}
    hashes = [config.run_hash() for config in configs]
    records: dict[str, dict] = {}
    result = GridResult(records=[])
    bar = tqdm(total=len(configs), desc="runs (ray)", file=sys.stderr, disable=not progress, dynamic_ncols=True)

    def settle(run_hash: str, record: dict) -> None:
        records[run_hash] = record
        result.count(record)
        bar.update(1)

    waiting: list[tuple[str, RunConfig]] = []
    for run_hash, config in zip(hashes, configs):
        existing = store.get(run_hash)
        if _is_cached(existing, retry_failed):
            settle(run_hash, {**existing, "cached": True})
        elif run_hash not in {h for h, _ in waiting}:
            waiting.append((run_hash, config))
    if not waiting:  # everything is in the store already: no Ray needed, and no write access
        bar.close()
        result.records = [records[h] for h in dict.fromkeys(hashes)]
        return result
    store.ensure_writable()

    try:
        started_here = _init_ray(ray, address)
    except ValueError:
        bar.close()  # before the error's one line, not after it
        raise
    try:
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        remote = ray.remote(execute_run)
        remote_group = ray.remote(execute_group)

        in_flight: dict[Any, list[tuple[str, RunConfig]]] = {}

        def submit(unit: list[tuple[str, RunConfig]]) -> None:
            options = {"num_cpus": 1, "num_gpus": 1 if any(_wants_gpu(c, cluster_gpus) for _, c in unit) else 0,
                       "max_retries": max_retries, "retry_exceptions": False}
            if env_vars:
                options["runtime_env"] = {"env_vars": env_vars}
            if len(unit) == 1:
                ref = remote.options(**options).remote(unit[0][1].to_dict(), store_root, retry_failed, run_fn)
            else:
                ref = remote_group.options(**options).remote([c.to_dict() for _, c in unit], store_root, retry_failed)
            in_flight[ref] = unit

        def submit_ready() -> None:
            still_waiting, ready = [], []
            for run_hash, config in waiting:
                blocked = False
                for source in config.sources:
                    state = records.get(source)
                    if state is None:
                        stored = store.get(source)
                        if stored is not None and stored["status"] == "done":
                            continue
                        if source in hashes:  # a run of this grid: wait for it
                            blocked = True
                            break
                        # not part of this grid and not done: train.run raises RunError, recorded as failed
                    elif state["status"] != "done":
                        record = failed_record(config, RuntimeError(f"source run {source} failed: "
                                                                    f"{state.get('reason')}"))
                        store.put(record)
                        settle(run_hash, record)
                        blocked = None
                        break
                if blocked is None:
                    continue
                if blocked:
                    still_waiting.append((run_hash, config))
                    continue
                ready.append((run_hash, config))
            waiting[:] = still_waiting
            units = [[i] for i in range(len(ready))] if run_fn is not None else \
                plan_units([config for _, config in ready], pack)
            for unit in units:
                submit([ready[i] for i in unit])

        submit_ready()
        try:
            while in_flight or waiting:
                if not in_flight:  # everything left waits on sources that never ran (should not happen)
                    for run_hash, config in waiting:
                        record = failed_record(config, RuntimeError("sources never finished"))
                        store.put(record)
                        settle(run_hash, record)
                    waiting.clear()
                    break
                done_refs, _ = ray.wait(list(in_flight), num_returns=1, timeout=poll_seconds)
                for ref in done_refs:
                    unit = in_flight.pop(ref)
                    try:
                        found = ray.get(ref)
                        found = found if isinstance(found, list) else [found]
                        for (run_hash, _), record in zip(unit, found):
                            if store.get(run_hash) is None:  # no shared file system: keep the numbers anyway
                                store.put({k: v for k, v in record.items() if k not in ("cached", "worker")})
                    except Exception as error:  # the worker died max_retries + 1 times, or Ray lost the task
                        found = []
                        for _, config in unit:
                            record = failed_record(config, error)
                            record["reason"] = (f"worker died or was lost; Ray gave up after {max_retries + 1} "
                                                f"attempt(s): {type(error).__name__}: "
                                                f"{str(error).splitlines()[0] if str(error) else ''}")
                            store.put(record)
                            found.append(record)
                    for (run_hash, config), record in zip(unit, found):
                        settle(run_hash, record)
                        bar.set_postfix_str(config.label(), refresh=False)
                if done_refs:
                    submit_ready()
        except KeyboardInterrupt:
            for ref in in_flight:
                ray.cancel(ref, force=True)
            raise
        finally:
            bar.close()
        result.records = [records[h] for h in dict.fromkeys(hashes) if h in records]
        return result
    finally:
        if started_here:
            ray.shutdown()
