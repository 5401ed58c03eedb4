"""Packed training (superpos/engine/packed.py): a packed group equals its runs trained alone, on both model kinds.

Every run trains tiny-llama (the fast Llama loss) or tiny-t5 on the built-in bbc-topic task for a few steps on CPU.
Tolerance, measured on CPU: the loss curves of a packed run and the run alone agree to a relative 1.1e-6 over 40
steps (1.3e-7 over the few steps here); predictions, scores, history and best points are identical. Trained tensors
agree to a relative 2.2e-4 in norm here, most of them to 1e-6; the worst are EPT's projections, which start at
zero: Adam's normalised step turns the rounding of a near-zero gradient into a visible step.

These runs are fp32 whatever the machine: in bf16 (``dtype="auto"`` on a CPU with bf16 units) another batch width
rounds otherwise (on tiny-t5, 1.6e-4 relative in the first loss), and the runs part from there; a packed bf16 run
agrees with its run alone in statistics, as with dropout on (tested below).
"""
from __future__ import annotations

import errno
import signal
import threading

import pytest
import torch
from safetensors.torch import load_file

import superpos.engine.packed as packed_module
import superpos.engine.files as files_module
import superpos.engine.train as train_module
import superpos.methods as methods_module
from superpos.engine import GridSpec, ResultsStore, RunConfig, run, run_configs, run_grid
from superpos.engine.grid import StorageError
from superpos.engine.packed import PackedGroup, plan_units, run_group

from copies import Killed, arm_kill, with_source


def fast_layers_state() -> str:
    from superpos.backbones import fast

    return fast.layers_state(torch.bfloat16, torch.device("cpu"))

LOSS_RTOL = 1e-5    # relative, per loss-curve point
STATE_RTOL = 1e-3   # relative, in norm, per trained tensor (and per analysis number)
BASE = dict(task="bbc-topic", train_limit=16, eval_limit=6, eval_batch_size=4, device="cpu", dtype="fp32")


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")


def config(method: str, backbone: str = "tiny-llama", **changes) -> RunConfig:
    values = dict(backbone=backbone, method=method, max_steps=4, batch_size=4, eval_every=2, seed=0, **BASE)
    values.update(changes)
    return RunConfig(**values)


def mixed_group(backbone: str, source: str) -> list[RunConfig]:
    """Every packable method, each with its own prompt length (1, 10, 5, 10, 10), schedule, batch size, learning
    rate, seed and protocol, so runs evaluate and finish at different steps."""
    return [config("simple", backbone, method_config={"n_prompts": 1}, max_steps=6),
            config("superpos", backbone, method_config={"m": 16}, seed=1, batch_size=2, eval_every=4,
                   protocol="heldout"),
            config("ept", backbone, method_config={"max_length": 64}, seed=4, max_steps=6, eval_every=0,
                   max_input_tokens=32),
            config("residual", backbone, method_config={"bottleneck": 8, "lr": 0.1}, seed=2, max_steps=5,
                   eval_every=3, eval_batch_size=3),
            config("attempt", backbone, sources=[source], seed=3, max_steps=6, batch_size=3)]


def assert_same_run(packed: dict, alone: dict, packed_store: ResultsStore, alone_store: ResultsStore) -> None:
    """The packed run is the run alone: same predictions, scores and best points; losses and trained tensors to
    the module's tolerance."""
    for key in ("status", "steps", "history", "best", "best_lenient", "trainable_params"):
        assert packed[key] == alone[key], key
    assert [s for s, _ in packed["loss_curve"]] == [s for s, _ in alone["loss_curve"]]
    assert [v for _, v in packed["loss_curve"]] == pytest.approx([v for _, v in alone["loss_curve"]], rel=LOSS_RTOL)
    for key in ("prompt_path", "state_path"):
        assert (packed[key] is None) == (alone[key] is None), key
        if packed[key] is not None:
            ours = load_file(str(packed_store.root / packed[key]))
            theirs = load_file(str(alone_store.root / alone[key]))
            assert ours.keys() == theirs.keys()
            for name, value in theirs.items():
                gap = float((ours[name].float() - value.float()).norm()) / (float(value.float().norm()) or 1.0)
                assert gap <= STATE_RTOL, (name, gap)
    assert numbers(packed["analysis"]) == pytest.approx(numbers(alone["analysis"]), rel=STATE_RTOL, abs=1e-6)
    assert packed["provenance"]["packed_runs"] >= 2 and "packed_runs" not in alone["provenance"]


def numbers(value) -> list[float]:
    """Every number in a nested record field, in order."""
    if isinstance(value, dict):
        return [x for key in sorted(value) for x in numbers(value[key])]
    if isinstance(value, (list, tuple)):
        return [x for item in value for x in numbers(item)]
    return [float(value)] if isinstance(value, (int, float)) else []


# ---------------------------------------------------------------- a packed group equals its runs alone
@pytest.mark.parametrize("backbone", ["tiny-llama", "tiny-t5"])
def test_a_packed_group_equals_its_runs_trained_alone(backbone, tmp_path):
    alone_store = ResultsStore(tmp_path / "alone")
    source = run(config("simple", backbone, seed=7), alone_store, progress=False)
    configs = mixed_group(backbone, source["hash"])
    alone = [run(c, alone_store, progress=False) for c in configs]
    packed_store = with_source(ResultsStore(tmp_path / "packed"), alone_store, source)
    packed = run_group(configs, packed_store, progress=False)
    for ours, theirs in zip(packed, alone):
        assert ours["provenance"]["packed_runs"] == len(configs)
        assert_same_run(ours, theirs, packed_store, alone_store)


@pytest.mark.parametrize("setting", ["dropout on", "bf16"])
def test_dropout_on_or_bf16_gives_other_numbers_but_the_same_statistics(setting, tmp_path):
    changes = dict(dropout=True, dropout_rate=0.1) if setting == "dropout on" else dict(dtype="bf16")
    configs = [config(m, max_steps=8, eval_every=4, seed=s, method_config=c, **changes)
               for s, (m, c) in enumerate([("simple", {}), ("superpos", {"m": 16}), ("residual", {"bottleneck": 8})])]
    alone = [run(c, ResultsStore(tmp_path / "alone"), progress=False) for c in configs]
    packed = run_group(configs, ResultsStore(tmp_path / "packed"), progress=False)
    for ours, theirs in zip(packed, alone):
        assert ours["status"] == theirs["status"] == "done"
        for record in (ours, theirs):  # bf16 on a CPU compiles the fast path's layers; dropout takes the HF path
            layers = record["precision"].get("decoder_layers")
            assert layers is None if setting == "dropout on" else layers in ("compiled", fast_layers_state())
            # generation's first step (in eval mode, where dropout does not act) wherever the dtype is bf16
            reduced = record["precision"]["dtype"] == "bf16"
            assert record["precision"].get("generation_prefill") == ("fast path" if reduced else None)
        ours_losses, their_losses = [v for _, v in ours["loss_curve"]], [v for _, v in theirs["loss_curve"]]
        if setting == "dropout on":
            assert ours_losses != their_losses  # other masks
        assert sum(ours_losses) / len(ours_losses) == pytest.approx(sum(their_losses) / len(their_losses), rel=0.02)
        assert max(abs(a - b) / b for a, b in zip(ours_losses, their_losses)) < 0.05


@pytest.mark.parametrize("path", ["tiny-llama fast", "tiny-llama hf", "tiny-t5"])
def test_one_packed_forward_gives_each_method_its_own_loss_and_gradient(path, request):
    """Backbone level: ``token_losses`` over ``MethodRows`` against ``loss`` of each method alone, on every path."""
    from superpos.backbones import Batch, MethodRows
    from superpos.methods import build_method

    backbone = request.getfixturevalue("tiny_t5" if path == "tiny-t5" else "tiny_llama")
    backbone.fast_loss = path != "tiny-llama hf"
    texts = ["the cat sat on the mat today", "a b c", "hello world, a longer input than the others here", "x"]
    targets = ["sport", "business", "tech", "politics"]
    methods = [build_method({"method": "simple", "n_prompts": 1}, backbone, seed=0),
               build_method({"method": "superpos", "m": 16}, backbone, seed=1),
               build_method({"method": "attempt", "n_prompts": 4}, backbone, seed=2,
                            source_prompts=torch.randn(2, 4, backbone.embed_dim)),
               build_method({"method": "ept", "max_length": 64}, backbone, seed=3)]
    batches = [backbone.encode(texts[i:] + texts[:i], targets, max_input_tokens=8 + 4 * i, max_target_tokens=4)
               for i in range(len(methods))]
    try:
        alone = []
        for method, batch in zip(methods, batches):
            loss = backbone.loss(batch, method)
            loss.backward()
            alone.append((loss.item(), [p.grad.clone() for p in method.parameters() if p.grad is not None]))
            method.zero_grad()
        losses, rows = backbone.token_losses(Batch.concat(batches, backbone.pad_token_id),
                                             MethodRows(methods, [len(b) for b in batches]))
        packed = [losses[(rows >= 4 * i) & (rows < 4 * i + 4)].mean() for i in range(len(methods))]
        sum(packed).backward()
    finally:
        backbone.fast_loss = True
    for (loss, grads), ours, method in zip(alone, packed, methods):
        assert ours.item() == pytest.approx(loss, rel=LOSS_RTOL)
        ours_grads = [p.grad for p in method.parameters() if p.grad is not None]
        assert len(ours_grads) == len(grads)
        for a, b in zip(ours_grads, grads):
            assert float((a - b).norm()) <= 1e-4 * float(b.norm()) + 1e-9, method.name


@pytest.mark.parametrize("backbone", ["tiny-llama", "tiny-t5"])
def test_a_packed_step_reads_the_device_no_more_often_for_more_runs(backbone, tmp_path):
    """On a GPU each value read back (``.item()``, ``bool(t)``, ``nonzero``) waits for the work queued before it. A
    packed step's forward, loss and backward read the same number for 2 runs as for 6: none per run (the AdamW
    steps aside: their step counters live on the CPU on every device)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from superpos.engine.train import Trainer

    def reads(pack: int) -> int:
        store = ResultsStore(tmp_path / str(pack))

        def trainer(index: int, shared=None) -> Trainer:
            method = ["simple", "superpos", "ept", "residual"][index % 4]
            method_config = {"m": 16} if method == "superpos" else {}
            return Trainer(config(method, backbone, seed=index, method_config=method_config),
                           f"reads-{pack}-{index}", store, None, progress=False, backbone=shared)

        trainers = [trainer(0)]
        trainers += [trainer(index, trainers[0].backbone) for index in range(1, pack)]
        group = PackedGroup(trainers, progress=False)
        for one in trainers:  # left out: AdamW reads its step counters, on the CPU on every device
            one.optimizer.step = lambda *args, **kwargs: None
        count = {"n": 0}

        class Reads(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                count["n"] += func.overloadpacket.__name__ in ("_local_scalar_dense", "nonzero")
                return func(*args, **(kwargs or {}))

        with Reads():
            assert not group.train_step(trainers)
        return count["n"]

    assert reads(2) == reads(6)


# ---------------------------------------------------------------- what runs alone, and what is left out
def test_full_fine_tuning_and_incompatible_runs_are_never_packed():
    configs = [config("simple"), config("full"), config("superpos", method_config={"m": 16}),
               config("simple", backbone="tiny-t5"), config("simple", seed=1), config("simple", dropout=True,
                                                                                    dropout_rate=0.1)]
    assert plan_units(configs, 4) == [[0, 2, 4], [1], [3], [5]]
    assert plan_units(configs, 2) == [[0, 2], [1], [3], [4], [5]]
    assert plan_units(configs, None) == [[i] for i in range(len(configs))]  # CPU: automatic means alone
    with pytest.raises(ValueError, match="full fine-tuning .* runs alone"):
        run_group(configs[:2], ResultsStore("unused"))
    with pytest.raises(ValueError, match="must share backbone"):
        run_group([configs[0], configs[3]], ResultsStore("unused"))
    with pytest.raises(ValueError, match="pack: must be an integer >= 1"):
        run_configs(configs, ResultsStore("unused"), pack=0)


def test_attempt_is_packed_after_its_sources_and_a_grid_packs_on_request(tmp_path):
    spec = GridSpec(backbones=["tiny-llama"], tasks=["bbc-topic", "bbc-next"], methods=["simple", "attempt", "full"],
                    attempt_sources=["bbc-topic"], budget={"max_steps": 2, "batch_size": 4, "train_limit": 8,
                                                           "eval_limit": 4, "eval_every": 2, "device": "cpu"})
    result = run_grid(spec, ResultsStore(tmp_path / "store"), pack=4)
    assert (result.done, result.failed) == (5, 0)
    by_method = {(r["config"]["task"], r["config"]["method"]): r for r in result.records}
    assert by_method[("bbc-topic", "simple")]["provenance"]["packed_runs"] == 2  # with bbc-next/simple
    assert "packed_runs" not in by_method[("bbc-next", "attempt")]["provenance"]  # alone in the second wave
    assert "packed_runs" not in by_method[("bbc-topic", "full")]["provenance"]


def test_a_done_run_is_served_and_a_run_held_elsewhere_trains_alone_afterwards(tmp_path):
    store = ResultsStore(tmp_path / "store")
    configs = [config("simple", seed=s) for s in range(4)]
    done = run(configs[0], store, progress=False)
    held, release = threading.Event(), threading.Event()

    def hold():
        with store.lock(configs[1].run_hash()):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    threading.Timer(1.0, release.set).start()  # the other "process" finishes while the group trains
    records = run_group(configs, store, progress=False)
    holder.join()
    assert records[0]["cached"] and records[0]["history"] == done["history"]
    assert "packed_runs" not in records[1]["provenance"] and records[1]["status"] == "done"
    assert [r["provenance"]["packed_runs"] for r in records[2:]] == [2, 2]


# ---------------------------------------------------------------- failures, interruptions
def nan_after(seed: int, step: int, monkeypatch) -> None:
    """The method built with ``seed`` returns a NaN prompt from its ``step``-th training forward on."""
    real = methods_module.build_method

    def build(*args, **kwargs):
        method = real(*args, **kwargs)
        if kwargs.get("seed") == seed:
            calls = {"n": 0}

            def poison(module, inputs, output):
                if module.training:
                    calls["n"] += 1
                    if calls["n"] >= step:
                        return output[0] * float("nan"), output[1]
                return None
            method.register_forward_hook(poison)
        return method

    monkeypatch.setattr(methods_module, "build_method", build)


def test_a_nan_in_one_run_fails_that_run_and_the_others_go_on(tmp_path, monkeypatch):
    nan_after(seed=1, step=3, monkeypatch=monkeypatch)
    configs = [config("simple", seed=s, max_steps=6) for s in range(3)]
    alone_store, packed_store = ResultsStore(tmp_path / "alone"), ResultsStore(tmp_path / "packed")
    alone = [run(c, alone_store, progress=False) for c in configs]
    packed = run_group(configs, packed_store, progress=False)
    assert [r["status"] for r in packed] == ["done", "failed", "done"]
    assert packed[1]["reason"] == alone[1]["reason"] == "non-finite loss (nan) at step 3"
    for key in ("steps", "history", "best"):
        assert packed[1][key] == alone[1][key], key
    assert numbers(packed[1]["loss_curve"]) == pytest.approx(numbers(alone[1]["loss_curve"]), rel=LOSS_RTOL)
    for index in (0, 2):
        assert_same_run(packed[index], alone[index], packed_store, alone_store)


@pytest.mark.parametrize("how", ["ctrl-c", "crash"])
def test_an_interrupted_group_resumes_to_the_uninterrupted_records(how, tmp_path, monkeypatch):
    configs = [config(m, dropout=True, dropout_rate=0.1, max_steps=6, seed=s, method_config=c)
               for s, (m, c) in enumerate([("simple", {"n_prompts": 2}), ("superpos", {"m": 16}), ("ept", {})])]
    reference = run_group(configs, ResultsStore(tmp_path / "reference"), progress=False)
    store = ResultsStore(tmp_path / "store")
    real_save, real_step = train_module.Trainer.save_checkpoint, PackedGroup.train_step
    pressed = []

    def save_and_interrupt(self, **options):
        real_save(self, **options)
        if how == "ctrl-c" and not pressed:
            pressed.append(1)
            signal.raise_signal(signal.SIGINT)  # as a user's Ctrl-C: the group stops at the end of this step

    def step_or_crash(self, trainers):
        if how == "crash" and trainers[0].step == 3:
            raise Killed
        return real_step(self, trainers)

    monkeypatch.setattr(train_module.Trainer, "save_checkpoint", save_and_interrupt)
    monkeypatch.setattr(PackedGroup, "train_step", step_or_crash)
    with pytest.raises(KeyboardInterrupt if how == "ctrl-c" else Killed):
        run_group(configs, store, progress=False)
    monkeypatch.undo()
    assert len(list(store.checkpoints_dir.glob("*/step-2"))) == len(configs)
    resumed = run_group(configs, store, progress=False)
    for ours, theirs in zip(resumed, reference):
        assert ours["resumed"] is True
        for key in ("status", "steps", "history", "loss_curve", "best", "best_lenient", "analysis"):
            assert ours[key] == theirs[key], key


def test_a_group_killed_at_any_write_resumes_bit_for_bit(tmp_path):
    """Runs of one group that end and evaluate at different steps, killed before a write, a rename or an
    evaluation (or halfway through a write), resume to the uninterrupted records: the same losses, points and
    trained tensors, bit for bit, and nothing left behind."""
    configs = [config("simple", method_config={"n_prompts": 2}, max_steps=6, eval_every=2),
               config("superpos", method_config={"m": 16}, seed=1, max_steps=4, eval_every=2),
               config("ept", seed=2, max_steps=6, eval_every=3)]
    reference_store = ResultsStore(tmp_path / "reference")
    reference = run_group(configs, reference_store, progress=False)
    with pytest.MonkeyPatch.context() as patch:
        counting = arm_kill(patch, 0, "before", evaluate=(packed_module, "evaluate_many"))
        run_group(configs, ResultsStore(tmp_path / "count"), progress=False)
    total = counting["count"]
    # every third event (each kind, inside and between the group's saves, between its records), three torn writes
    cases = [(at, False) for at in range(1, total + 1, 3)] + [(at, True) for at in (2, total // 2, total - 1)]
    for at, torn in cases:
        store = ResultsStore(tmp_path / f"killed-{at}-{torn}")
        with pytest.MonkeyPatch.context() as patch:
            events = arm_kill(patch, at, "torn" if torn else "before", evaluate=(packed_module, "evaluate_many"))
            with pytest.raises(Killed):
                run_group(configs, store, progress=False)
            assert events["fired"]
        resumed = run_group(configs, store, progress=False)
        for ours, theirs in zip(resumed, reference):
            for key in ("status", "steps", "history", "loss_curve", "best", "best_lenient", "analysis"):
                assert ours[key] == theirs[key], (at, torn, key)
            for key in ("prompt_path", "state_path"):
                if theirs[key] is not None:
                    mine, want = load_file(str(store.root / ours[key])), load_file(
                        str(reference_store.root / theirs[key]))
                    assert all(torch.equal(mine[name], want[name]) for name in want), (at, torn, key)
        store.clean_stale()
        assert not list(store.root.rglob("*.tmp*")) and not list(store.checkpoints_dir.glob("*/*")), (at, torn)
    assert total == 53  # docs/RUNNING.md counts them


def test_a_full_disk_inside_a_group_stops_in_one_line_and_the_same_command_resumes(tmp_path, monkeypatch):
    """ENOSPC at a checkpoint write of a packed group: the grid stops with the storage error (the CLI's exit 2),
    no run is recorded as failed, and the next call trains the group on to the uninterrupted records."""
    configs = [config("simple", seed=0), config("superpos", method_config={"m": 16}, seed=1)]
    reference = run_group(configs, ResultsStore(tmp_path / "reference"), progress=False)
    store = ResultsStore(tmp_path / "store")
    real, writes = files_module.write_synced, []

    def full_disk(path, data):
        writes.append(path)
        if len(writes) == 7:  # the second run's checkpoint of the last step; the first run's is written
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(files_module, "write_synced", full_disk)
    with pytest.raises(StorageError, match="No space left on device"):
        run_configs(configs, store, pack=2, progress=False)
    monkeypatch.undo()
    assert not list(store.records_dir.glob("*.json"))  # nothing recorded as failed
    resumed = run_configs(configs, store, pack=2, progress=False).records
    for ours, theirs in zip(resumed, reference):
        assert ours["status"] == "done" and ours["resumed"] is True
        for key in ("steps", "history", "loss_curve", "best", "best_lenient", "analysis"):
            assert ours[key] == theirs[key], key
