"""``make reproduce``: train every run of a profile, check it against the committed reference, render.

1. **Train.** Every run that any notebook of the profile asks for (the union of their grids, each run once,
   dependencies first) trains into the profile's working store, ``results/<profile>/`` (records, prompts,
   checkpoints; not committed). A finished run there is kept, so an interrupted ``make reproduce`` resumes.
   Training happens here, in this process, so its progress bars reach the terminal and Ctrl-C stops at a
   step boundary with the checkpoint saved.
2. **Compare.** Each fresh record against the reference record of the same run hash in
   ``results/<profile>/reference/`` (committed): identical, within tolerance, or different
   (:mod:`superpos.engine.compare`). One summary line; the table goes to
   ``results/<profile>/fresh/tables/reproduction_<profile>.{csv,md}`` (fresh runs render under ``fresh/``, never over
   the committed renders of the reference).
3. **Render.** papermill executes every notebook with the profile injected; every run is now in the store,
   so the notebooks only read and plot. Executed copies go to ``results/<profile>/notebooks/`` without
   timestamps or timings, so rendering identical records twice leaves git clean. Each notebook executes into
   ``notebooks/.partial/`` and is moved into place once papermill is through with it (finished or failed), so
   a Ctrl-C never leaves a half-executed copy that passes for a rendered one: the partial copy is removed, the
   previous render stays, and the one line printed says so (the kernel's stderr, where its ZMQ errors go when
   the client is cut off, is kept out of the terminal and relayed only after a notebook that was not interrupted).

``from_reference=True`` (``make report``) skips 1 and 2 and renders from the reference itself;
``accept=True`` (``make reference``) makes the fresh runs the new reference after training;
``extend=True`` (``make extend``) builds a reference over several sittings: it trains only the runs the
reference lacks, adds each one that finishes (before a Ctrl-C too), and renders from the reference once it
holds them all.
Kernels get ``TQDM_DISABLE=1`` and quiet transformers logging.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from .engine.grid import Interrupted
from .paths import (NOTEBOOKS_DIR, OFFLINE_VARIABLES, fresh_dir, hub_is_offline, reference_dir, renders_dir,
                    shown_path)
from .profiles import NOTEBOOKS, get_profile, notebook_name, profile_configs

KERNEL = "python3"
START_TIMEOUT_S = 180
#: Environment of every notebook kernel (papermill starts kernels with the caller's environment).
KERNEL_ENVIRONMENT = {"TQDM_DISABLE": "1", "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false",
                      "PYTHONWARNINGS": "ignore"}
_SUMMARY = re.compile(r"grid: \d+ runs: .*")


@contextlib.contextmanager
def kernel_environment(extra: dict[str, str]):
    """Set ``extra`` in ``os.environ`` for the kernels started inside; restore afterwards."""
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def executed_dir(profile: str) -> Path:
    """Where executed copies of the notebooks go: ``<renders>/notebooks`` (``paths.renders_dir``)."""
    return renders_dir(profile) / "notebooks"


def select_notebooks(notebooks: list[str] | None) -> list[str]:
    return list(NOTEBOOKS) if not notebooks else [notebook_name(n) for n in notebooks]


def grid_summaries(path: Path) -> list[str]:
    """The grid summary lines (``grid: N runs: ...``) an executed notebook printed."""
    import nbformat

    lines = []
    for cell in nbformat.read(path, as_version=4).cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                lines.extend(_SUMMARY.findall(output.get("text", "")))
    return lines


def train_profile(profile: str, names: list[str], *, progress: bool = True, pack: int | None = None,
                  on_records=None):
    """Step 1: train every run of the notebooks ``names`` under ``profile`` into its working store (``pack`` and
    ``on_records``: as for ``run_configs``)."""
    from .engine import ResultsStore, run_configs

    configs = profile_configs(profile, names)
    store = ResultsStore(profile=profile)
    stored = sum(store.is_done(config.run_hash()) for config in configs)
    print(f"train: {len(configs)} runs, {stored} already in {shown_path(store.root)}, {len(configs) - stored} to train",
          flush=True)
    return run_configs(configs, store, progress=progress, pack=pack, on_records=on_records)


def compare_with_reference(profile: str, records: list[dict]) -> str:
    """Step 2: compare fresh ``records`` with the reference; write the table; return the summary line."""
    from .engine import ResultsStore
    from .engine.compare import TOLERANCE, compare_runs, rounded, sample_spread, summary_line
    from .engine.frame import records_frame
    from .report import caption, publish_table

    folder, which = matching_reference(profile, records)
    reference = ResultsStore(folder, read_only=True)
    comparison = compare_runs(records, reference)
    line = f"{summary_line(comparison)}; {which}"
    numbers = comparison.copy()
    for column in numbers.columns:
        if column.startswith(("score", "lenient", "invalid", "final", "reference_", "delta_")) and \
                not column.endswith(("precision", "device")):
            numbers[column] = [rounded(v, 4 if "loss" in column else 2) for v in numbers[column]]
    shown = numbers[["run", "verdict"]].copy()
    for key, title in (("score", "strict"), ("lenient_score", "lenient"), ("invalid_rate", "invalid %"),
                       ("final_loss", "final loss"), ("precision", "dtype")):
        shown[f"{title} (fresh / reference)"] = [f"{_cell(a)} / {_cell(b)}" for a, b in
                                                 zip(numbers[key], numbers[f"reference_{key}"])]
    shown["detail"] = numbers["detail"]
    tolerance = ", ".join(f"{k} ±{v:g}{' (relative)' if k == 'final_loss' else ' points'}" for k, v in TOLERANCE.items())
    frame = records_frame(records)
    with kernel_environment({"SUPERPOS_OUTPUT": str(fresh_dir(profile))}):  # about fresh runs: never committed
        publish_table(shown, "reproduction", profile, data=numbers, title=f"Reproduction of the {profile} reference: {line}",
                      caption=caption(profile, frame, f"Fresh runs against {shown_path(reference.root)}; tolerance: "
                                                      f"{tolerance}" + sample_spread(comparison)))
    return line


def reference_precision(folder: Path) -> str | None:
    """The precision a reference's records ran in (the first record's; None for an empty folder)."""
    import json

    for path in sorted((folder / "records").glob("*.json")):
        try:
            return json.loads(path.read_text())["precision"]["dtype"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def matching_reference(profile: str, records: list[dict]) -> tuple[Path, str]:
    """``(folder, sentence)``: the reference that ran in the fresh runs' precision, and which one it is. A
    profile's references: ``results/<profile>/reference/`` (the one ``make report`` renders) and, for other
    machine kinds, ``reference-<precision>/`` beside it (a CPU with native bf16 runs ``auto`` in bf16, an AVX2 one
    in fp32: each compares with its own)."""
    primary = reference_dir(profile)
    fresh = sorted({(record.get("precision") or {}).get("dtype") for record in records} - {None})
    candidates = [primary, *sorted(primary.parent.glob("reference-*"))]
    for folder in candidates:
        precision = reference_precision(folder)
        if precision is not None and precision in fresh:
            return folder, f"compared with the {precision} reference in {shown_path(folder)}, the one for this machine's precision"
    ran = "/".join(fresh) or "no precision"
    return primary, (f"no reference in {ran} (the runs' precision) among {', '.join(shown_path(c) for c in candidates)}: "
                     f"compared with {shown_path(primary)} ({reference_precision(primary) or 'empty'})")


def _run_hash(path: Path) -> str:
    """records/<hash>.json, prompts/<hash>.safetensors, readouts/<hash>-k5.json -> <hash>."""
    return path.name.split(".")[0].split("-")[0]


def copy_runs(source, target, hashes: set[str], *, readouts: bool = False) -> None:
    """Copy the records and prompts (and with ``readouts`` the readouts) of runs ``hashes`` from the store
    ``source`` into the store ``target``, each file written atomically."""
    from .engine.files import atomic_write_bytes

    for folder, pattern in (("records", "*.json"), ("prompts", "*.safetensors"), ("readouts", "*.json")):
        if folder == "readouts" and not readouts:
            continue
        (target.root / folder).mkdir(parents=True, exist_ok=True)
        for path in (source.root / folder).glob(pattern):
            if _run_hash(path) in hashes:
                atomic_write_bytes(target.root / folder / path.name, path.read_bytes())


def drop_runs_except(store, keep: set[str]) -> None:
    """Remove from ``store`` the records, prompts and readouts of every run not in ``keep``."""
    for folder, pattern in (("records", "*.json"), ("prompts", "*.safetensors"), ("readouts", "*.json")):
        for path in (store.root / folder).glob(pattern):
            if _run_hash(path) not in keep:
                path.unlink()


def accept_as_reference(profile: str, records: list[dict], *, readouts: bool = False) -> None:
    """Make the fresh ``records`` (and their prompts, and with ``readouts`` their nearest-token readouts) the
    profile's committed reference; runs of the profile no longer asked for are removed from it."""
    from .engine import ResultsStore

    source, target = ResultsStore(profile=profile), ResultsStore(reference_dir(profile))
    keep = {record["hash"] for record in records}
    drop_runs_except(target, keep)
    copy_runs(source, target, keep, readouts=readouts)


def extend_reference(profile: str, names: list[str], *, progress: bool = True, pack: int | None = None) -> bool:
    """Grow the profile's reference over several sittings (or machines); True once it holds every run of the
    notebooks ``names``.

    The reference's runs are copied into the working store as finished, the rest train there, and every run
    that finishes, in this call or before a Ctrl-C ends it, is added to the reference. Runs the profile no longer
    asks for (an older code version's, say) leave the reference; no other run does.
    """
    from .engine import ResultsStore

    store, reference = ResultsStore(profile=profile), ResultsStore(reference_dir(profile))
    asked = {config.run_hash() for config in profile_configs(profile)}
    wanted = [config.run_hash() for config in profile_configs(profile, names)]
    seeded = {h for h in wanted if reference.is_done(h) and not store.is_done(h)}
    if seeded:
        store.ensure_writable()
        copy_runs(reference, store, seeded)
    print(f"extend: {sum(map(reference.is_done, wanted))} of {len(wanted)} runs are in the reference "
          f"({len(seeded)} copied into {shown_path(store.root)})", flush=True)

    def add(hashes: set[str]) -> None:
        copy_runs(store, reference, {h for h in hashes if not reference.is_done(h) and store.is_done(h)})

    reference.root.mkdir(parents=True, exist_ok=True)
    drop_runs_except(reference, asked)
    before = {h for h in asked if reference.is_done(h)}
    try:  # each run goes into the reference as it finishes, so not even a killed process loses one
        result = train_profile(profile, names, progress=progress, pack=pack,
                               on_records=lambda records: add({record["hash"] for record in records}))
    finally:  # and whatever finished earlier in the working store, or before a Ctrl-C
        add(asked)
        held = sum(map(reference.is_done, wanted))
        added = sum(reference.is_done(h) for h in asked if h not in before)
        print(f"extend: {added} runs added; the reference holds {held} of the {len(wanted)} runs "
              f"in {shown_path(reference.root)}", flush=True)
    if result.failed:
        print(f"extend: {result.failed} runs failed; the same command retries them", file=sys.stderr, flush=True)
    return held == len(wanted)


def reproduce(profile: str = "quick", notebooks: list[str] | None = None, *, output_dir: str | Path | None = None,
              cell_timeout_s: int | None = None, start_timeout_s: int = START_TIMEOUT_S, progress: bool = True,
              from_reference: bool = False, accept: bool = False, extend: bool = False,
              pack: int | None = None) -> int:
    """Train, compare and render the notebooks (all, in order, or ``notebooks``) of ``profile``; return an exit
    code (0: every run finished and every notebook ran; 1 otherwise). ``from_reference`` renders from the
    committed reference without training; ``accept`` makes the fresh runs the new reference; ``extend`` trains
    what the reference lacks and adds it (:func:`extend_reference`), then renders from the reference once it is
    complete; ``pack`` packs compatible runs as ``run_configs`` does (None: automatic, on CUDA only). Raises
    ``ValueError`` for unknown names or a reference that lacks runs."""
    spec = get_profile(profile)
    names = select_notebooks(notebooks)
    if not NOTEBOOKS_DIR.is_dir():
        raise ValueError(f"reproduce: no notebooks at {NOTEBOOKS_DIR}; the installed package holds the library only, "
                         "`make reproduce` runs from a clone of the source repository")
    if from_reference + accept + extend > 1:
        raise ValueError("reproduce: from_reference, accept and extend exclude each other")
    from .engine.packed import check_pack

    check_pack(pack)
    if extend:
        if not extend_reference(profile, names, progress=progress, pack=pack):
            print("extend: the notebooks render once the reference holds every run (the same command goes on)",
                  flush=True)
            return 1
        from_reference = True
    # Fresh runs render beside the committed renders, never over them: those are the reference's (make report).
    renders = {} if from_reference or accept else {"SUPERPOS_OUTPUT": str(fresh_dir(profile))}
    environment = {**KERNEL_ENVIRONMENT, **renders}
    with kernel_environment(renders):  # this process's tables (the comparison) go there too
        return _reproduce(spec, profile, names, environment, output_dir=output_dir, cell_timeout_s=cell_timeout_s,
                          start_timeout_s=start_timeout_s, progress=progress, from_reference=from_reference,
                          accept=accept, pack=pack)


def _reproduce(spec, profile: str, names: list[str], environment: dict, *, output_dir, cell_timeout_s,
               start_timeout_s: int, progress: bool, from_reference: bool, accept: bool, pack) -> int:
    """:func:`reproduce` once its arguments are checked and the renders' folder is chosen (in ``environment``)."""
    import papermill

    out = Path(output_dir) if output_dir is not None else executed_dir(profile)
    timeout = cell_timeout_s if cell_timeout_s is not None else spec.cell_timeout_s
    if profile == "paper" and hub_is_offline() and not from_reference:
        print(f"superpos: profile paper loads T5 from the hub, but {'/'.join(OFFLINE_VARIABLES)} say offline; "
              "run `make reproduce PROFILE=paper OFFLINE=0` on a machine with network", file=sys.stderr)
    failures, started, line, fresh = [], time.perf_counter(), None, []
    if from_reference:
        missing = missing_from_reference(profile, names)
        if missing:
            raise ValueError(f"report: {missing} runs of profile {profile} are not in {shown_path(reference_dir(profile))}; "
                             f"`make reproduce PROFILE={profile}` trains them")
        environment["SUPERPOS_STORE"] = str(reference_dir(profile))
        print(f"report: profile {profile}, rendering from {shown_path(reference_dir(profile))} (nothing trains)", flush=True)
    else:
        print(f"reproduce: profile {profile} ({spec.description})", flush=True)
        result = train_profile(profile, names, progress=progress, pack=pack)
        fresh = result.records
        if result.failed:
            failures.append(f"{result.failed} failed runs")
        if accept:
            accept_as_reference(profile, fresh)
            print(f"reference: {len(fresh)} runs of profile {profile} are now the reference in "
                  f"{shown_path(reference_dir(profile))}", flush=True)
        line = compare_with_reference(profile, fresh)
        print(line, flush=True)
    if names == list(NOTEBOOKS):  # a full render rewrites every table and figure: none may outlive its notebook
        clear_outputs(profile)    # only now: a bad argument, a missing run or a Ctrl-C above leaves them all
    out.mkdir(parents=True, exist_ok=True)
    with kernel_environment(environment):
        for index, name in enumerate(names, 1):
            target = out / f"{name}.ipynb"
            partial = out / ".partial" / f"{name}.ipynb"  # renamed to target once papermill is through with it
            partial.parent.mkdir(exist_ok=True)
            clock = time.perf_counter()
            print(f"[{index}/{len(names)}] {name}", flush=True)
            with tempfile.TemporaryFile() as kernel_log:
                try:
                    papermill.execute_notebook(
                        str(NOTEBOOKS_DIR / f"{name}.ipynb"), str(partial), parameters={"profile": profile},
                        kernel_name=KERNEL, progress_bar={"disable": not progress, "leave": True, "file": sys.stderr},
                        start_timeout=start_timeout_s, execution_timeout=timeout, cwd=str(NOTEBOOKS_DIR),
                        kernel_manager_class=kernel_manager_logging_to(kernel_log),
                        extra_arguments=["--IPKernelApp.log_level=ERROR"])  # no start-up chatter on the terminal
                except KeyboardInterrupt:
                    # The kernel's stderr (its ZMQ errors as the client goes away) is dropped with the log; the
                    # half-executed copy must not pass for a rendered notebook: removed, the last whole one kept.
                    partial.unlink(missing_ok=True)
                    with contextlib.suppress(OSError):
                        partial.parent.rmdir()
                    raise Interrupted(f"interrupted while rendering {name}; its partial copy was removed "
                                      f"({shown_path(target)} is {'the previous render' if target.exists() else 'absent'}); "
                                      f"{'no run trains for a report' if from_reference else 'every finished run is kept'}"
                                      f" and the same command renders again") from None
                except Exception as error:  # a failing notebook must not stop the others
                    first = str(error).strip().splitlines()
                    failures.append(name)
                    print(f"    {name} failed: {type(error).__name__}: {first[-1] if first else ''} "
                          f"(see {shown_path(target)})", file=sys.stderr, flush=True)
                relay_kernel_log(kernel_log)
            if partial.exists():
                os.replace(partial, target)
            with contextlib.suppress(OSError):
                partial.parent.rmdir()
            if target.exists():
                normalize_executed(target)
                for summary in grid_summaries(target):
                    if not summary.endswith(" 0 failed"):
                        failures.append(f"{name} ({summary})")
            print(f"    {name}: {time.perf_counter() - clock:.0f} s", flush=True)
    if accept:  # readouts are made while notebook 06 renders
        accept_as_reference(profile, fresh, readouts=True)
    total = time.perf_counter() - started
    print(f"{'report' if from_reference else 'reproduce'}: {len(names)} notebooks in {total / 60:.1f} min; executed "
          f"copies in {shown_path(out)}; tables and figures in {shown_path(renders_dir(profile))}", flush=True)
    if line:
        print(line, flush=True)
    if failures:
        print(f"reproduce: problems in {', '.join(dict.fromkeys(failures))}", file=sys.stderr)
        return 1
    return 0


def kernel_manager_logging_to(log):
    """A jupyter kernel manager class whose kernels write their stderr to the file ``log`` (not the terminal):
    on Ctrl-C, a kernel cut off from papermill prints ZMQ tracebacks there, not on the user's screen."""
    from jupyter_client.manager import AsyncKernelManager

    class LoggingKernelManager(AsyncKernelManager):
        async def _async_start_kernel(self, **kw):
            kw.setdefault("stderr", log)
            return await super()._async_start_kernel(**kw)

        start_kernel = _async_start_kernel

        def __del__(self):
            # Collected after a Ctrl-C, when its sockets are half gone, jupyter_client's own __del__ can raise
            # ("Exception ignored in ... TraitError" on the terminal); there is nothing left to close then.
            with contextlib.suppress(Exception):
                super().__del__()

    return LoggingKernelManager


def relay_kernel_log(log) -> None:
    """Copy what a kernel wrote to its stderr (kernel errors, at log level ERROR) to ours, after the fact."""
    log.flush()
    log.seek(0)
    text = log.read().decode(errors="replace")
    if text.strip():
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        sys.stderr.flush()


def _cell(value) -> str:
    return "–" if value is None or value != value else str(value)


def clear_outputs(profile: str) -> None:
    """Remove the profile's tables and figures (in the renders' folder) before a full render, but the comparison
    with the reference: no notebook writes it (a reproduction has just written it into ``fresh/``)."""
    for kind in ("tables", "figures"):
        for path in (renders_dir(profile) / kind).glob("*"):
            if not path.name.startswith(f"reproduction_{profile}."):
                path.unlink()


def missing_from_reference(profile: str, names: list[str]) -> int:
    """How many runs of the notebooks ``names`` the profile's reference lacks (or holds unfinished)."""
    from .engine import ResultsStore

    reference = ResultsStore(reference_dir(profile), read_only=True)
    return sum(not reference.is_done(config.run_hash()) for config in profile_configs(profile, names))


#: Notebook metadata that changes on every execution without the content changing.
_VOLATILE = ("start_time", "end_time", "duration")


def normalize_executed(path: Path) -> None:
    """Make an executed notebook a function of its content: no timestamps or durations (papermill's and the
    kernel's), repository-relative paths, and a fixed id for papermill's injected-parameters cell."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    meta = notebook.metadata.get("papermill", {})
    for key in _VOLATILE:
        meta.pop(key, None)
    if meta.get("output_path"):
        meta["output_path"] = str(path)  # executed into a partial copy, renamed to path once complete
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = shown_path(Path(meta[key]).resolve())
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        for key in _VOLATILE:
            cell.metadata.get("papermill", {}).pop(key, None)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell["id"] = "injected-parameters"
    nbformat.write(notebook, path)
