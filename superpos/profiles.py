"""Profiles: the one place budgets live. Every notebook takes one parameter, ``profile``.

- ``paper``: the paper's setting (§4.4) on GPU runners with network: T5 v1.1 LM-adapted Small and Base from
  the hub, the 13 GLUE/SuperGLUE tasks, 80 epochs, batch 32, every method with dropout on and off.
- ``offline``: the embedded default backbone (SmolLM2-135M) on the offline BBC suite, every method, three
  seeds; sized for one GPU (about 40 minutes on an H100).
- ``quick``: the default of ``make reproduce``: the embedded default on bbc-topic, one seed and 48 steps per
  run, so all seven notebooks finish within 30 minutes on a 2-core CPU. It checks the pipeline end to end;
  one seed gives no spread, so its numbers are not conclusions.
- ``smoke``: a tiny random T5 on two offline tasks, seconds per notebook; for the tests.

:func:`notebook_grid` gives each notebook's :class:`~superpos.engine.GridSpec` for a profile. Notebooks share
runs: the same run config has the same hash, so a run one notebook trained is served from the store to
the next (``02``'s dropout-off rows are ``01``'s runs, ``03``'s m = 128 is ``01``'s SuperPos, ``05``
re-reads ``01`` and ``02``, ``04``'s plain SuperPos is ``01``'s, ``07``'s full EPT is ``01``'s). ``06`` shares
nothing: Lester et al.'s vocab init samples among the 5,000 most frequent tokens, the SuperPos paper's among all.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from .engine import GridSpec, expand
from .suggest import did_you_mean
from .tasks import PAPER_TASKS

NOTEBOOKS = ("01_method", "02_dropout_ablation", "03_m_ablation", "04_softmax_variant", "05_stability_analysis",
             "06_prompt_tuning_baselines", "07_ept")
PROMPT_METHODS = ("simple", "residual", "attempt", "superpos", "ept")
#: Table 1's full fine-tuning row is run with the backbone's dropout on only (✓), as in the paper.
FULL_FT = {"method": "full", "dropout": [True]}
#: Table 2 compares the methods evaluated on every task: ATTEMPT skips its source tasks (paper's note).
TABLE2_METHODS = ("simple", "residual", "superpos")
#: Lester et al. (2021) §3: "sampled vocab" init draws from the 5,000 most common tokens.
LESTER_VOCAB_TOP_K = 5000
#: EPT's ablation stages (Lan et al., EPT): decomposition only, + prompt fusion, + multi-space projection (= EPT).
EPT_STAGES = {"decomposition": {"fusion": False, "projection": False},
              "fusion": {"fusion": True, "projection": False},
              "ept": {}}

BBC_TASKS = ("bbc-topic", "bbc-same-topic", "bbc-next", "bbc-copa", "bbc-sts", "bbc-multirc")
T5_SMALL, T5_BASE = "google/t5-small-lm-adapt", "google/t5-base-lm-adapt"


@dataclasses.dataclass(frozen=True)
class Profile:
    """A budget for every notebook. ``budget`` holds :class:`~superpos.engine.RunConfig` fields shared by
    all runs; ``scopes`` narrows a notebook's tasks or backbones (``{notebook: {"tasks": [...]}}``)."""

    name: str
    description: str
    note: str                                # said in every caption: the budget's limits (never its results)
    backbones: tuple[str, ...]
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    budget: dict[str, Any]
    task_budget: dict[str, dict] = dataclasses.field(default_factory=dict)
    attempt_sources: tuple[str, ...] = ()
    m_values: tuple[int, ...] = (1, 4, 16, 64, 128, 256)
    prompt_lengths: tuple[int, ...] = (1, 5, 10, 20)
    inits: tuple[str, ...] = ("uniform", "vocab", "labels")
    scopes: dict[str, dict] = dataclasses.field(default_factory=dict)
    #: p′ starts compared in notebook 04, for the linear and the softmax superposition (beside each one's default)
    weights_inits: tuple[str, ...] = ("one_hot", "normal", "uniform")
    #: axes of that p′-init ablation where they differ from notebook 04's (e.g. {"tasks": [...]}, to bound its cost)
    weights_init_scope: dict = dataclasses.field(default_factory=dict)
    #: backbones beyond notebook 04's on which plain SuperPos runs for Table 3 (the paper: original T5-Base, App. A.1)
    table3_backbones: tuple[str, ...] = ()
    dropout_methods: tuple[str, ...] = PROMPT_METHODS  # methods of the dropout ablation (notebook 02)
    ept_stages: tuple[str, ...] = tuple(EPT_STAGES)    # EPT's ablation stages run in notebook 07
    full_finetuning: bool = True                # Table 1's full fine-tuning row (notebooks 01 and 05)
    curve_tasks: tuple[str, ...] | None = None  # tasks drawn in learning-curve figures (None: all)
    figure2_backbone: str | None = None         # the backbone of Figure 2's panels (None: the first of backbones)
    cell_timeout_s: int | None = 3600           # papermill's per-cell limit in `make reproduce`
    hardware: str = ""
    expected_minutes: float | None = None
    #: tasks of the learnability gate (notebook 01): simple prompt tuning on each, the profile's seeds and budget;
    #: a task enters the profile's ``tasks`` when its interval clears the majority class (docs/TASKS.md)
    gate_tasks: tuple[str, ...] = ()
    gate_seeds: tuple[int, ...] | None = None  # seeds of the gate's runs on gate_tasks (None: the profile's)
    #: a gate task's own seeds where they differ from ``gate_seeds`` ({task: seeds})
    gate_task_seeds: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)

    def figure2(self) -> str:
        """The backbone Figure 2's panels show."""
        return self.figure2_backbone or self.backbones[0]

    def runs(self) -> int:
        """How many distinct runs all notebooks together ask for (shared runs counted once)."""
        return len(profile_configs(self))


#: quick: 16 runs of 48 steps at batch 8 on bbc-topic, one seed: every notebook's pipeline end to end within 30
#: minutes of a 2-core CPU (measured: docs/NOTEBOOKS.md, "Measured"). Fewer, longer runs rather than many short
#: ones, so that the runs reach valid labels and the pipeline's every table has numbers to show.
QUICK_BUDGET = dict(epochs=1, max_steps=48, batch_size=8, eval_every=24, eval_batch_size=64, train_limit=384,
                    eval_limit=64, max_input_tokens=64, dropout_rate=0.1, protocol="paper")
#: cpu: the seeded reference, sized for statistical power (README, "Results at a glance"): 5 seeds paired across
#: settings; 150 steps at batch 8 (1.2 passes over 1,000 training rows, the budget of the gate:
#: docs/TASKS.md); dev = 200 fixed examples scored every 50 steps to select the point, test = the
#: other 500 of the validation split, scored at the selected point (protocol heldout). dtype auto: bf16 on a CPU
#: with native bf16, where the reference was made (cost per run: docs/NOTEBOOKS.md, "Reference results").
CPU_BUDGET = dict(max_steps=150, batch_size=8, eval_every=50, eval_batch_size=64, train_limit=1000, eval_limit=200,
                  max_input_tokens=96, dropout_rate=0.1, protocol="heldout")
#: the tasks the learnability gate admits (docs/TASKS.md: its table is written from the gate's records)
CPU_TASKS = ("bbc-topic", "bbc-paraphrase")
#: the other BBC tasks, checked by the gate and left out of the reference because they fail it
CPU_GATE_TASKS = ("bbc-same-topic", "bbc-next", "bbc-copa", "bbc-sts", "bbc-multirc", "bbc-restate", "bbc-overlap")

PROFILES: dict[str, Profile] = {
    "paper": Profile(
        name="paper",
        description="The paper's setting: T5 v1.1 LM-adapted Small and Base (hub), the 13 GLUE/SuperGLUE tasks, "
                    "80 epochs, batch 32, dropout on and off (needs GPUs and network).",
        note="The paper's protocol (§4.4): 80 epochs, AdamW without scheduler, best epoch on validation. The paper "
             "does not state the batch size, the MNLI split, the seed or the input length: batch 32, MNLI matched, "
             "seed 0, inputs cut at 256 tokens (MultiRC and BoolQ: 512).",
        backbones=(T5_SMALL, T5_BASE),
        tasks=PAPER_TASKS,
        seeds=(0,),
        budget=dict(epochs=80, batch_size=32, eval_every=0, eval_batch_size=128, max_input_tokens=256,
                    protocol="paper", dtype="fp32"),
        # The paper does not say where it cut inputs (the Residual release defaults to 512). 256 T5 tokens hold
        # nearly every GLUE/SuperGLUE input except the passages of MultiRC and BoolQ; every record measures the
        # fraction it cut (data.truncated), and the captions show it.
        task_budget={"multirc": {"max_input_tokens": 512}, "boolq": {"max_input_tokens": 512}},
        table3_backbones=("t5-base",),
        attempt_sources=("qqp", "qnli", "mnli", "sst2"),  # §4.4: ATTEMPT's source prompts, left out of its evaluation
        m_values=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        prompt_lengths=(1, 5, 10, 20, 100, 150),          # Lester et al. Fig. 3(a), plus the paper's 10
        scopes={
            # Figure 2 uses T5v1.1 Base LM-Adapted; Table 3's softmax row is T5v1.1 Small.
            "03_m_ablation": {"backbones": (T5_BASE,), "tasks": ("mrpc", "stsb", "cola", "rte", "cb", "copa", "wic")},
            "04_softmax_variant": {"backbones": (T5_SMALL,)},
            "06_prompt_tuning_baselines": {"backbones": (T5_SMALL,),
                                           "tasks": ("mrpc", "cola", "rte", "cb", "copa", "wic", "boolq")},
        },
        curve_tasks=("mrpc", "stsb", "cola", "rte", "cb", "copa", "wic", "boolq"),
        figure2_backbone=T5_BASE,  # "results from our experiment using 'T5v1.1 Base LM-Adapted'" (Figure 2)
        cell_timeout_s=None,
        hardware="A100/H100-class GPUs with network (the paper: ~1000 A100 GPU hours)",
    ),
    "offline": Profile(
        name="offline",
        description="The embedded default (SmolLM2-135M) on the six offline BBC tasks, every method, 3 seeds; "
                    "about 40 minutes on one H100.",
        note="Offline stand-in: SmolLM2-135M (causal) instead of T5 and BBC-made tasks instead of GLUE/SuperGLUE, "
             "a few hundred steps per run: differences between methods are meaningful where they exceed the "
             "seeds' spread; absolute numbers are not comparable with the paper's.",
        backbones=("smollm2-135m",),
        tasks=BBC_TASKS,
        seeds=(0, 1, 2),
        budget=dict(epochs=4, max_steps=250, batch_size=16, eval_every=50, eval_batch_size=128, train_limit=1000,
                    eval_limit=200, max_input_tokens=128, dropout_rate=0.1, protocol="paper"),
        attempt_sources=("bbc-topic", "bbc-same-topic"),
        m_values=(1, 4, 16, 64, 128, 256),
        prompt_lengths=(1, 5, 10, 20, 50),
        scopes={**{name: {"tasks": ("bbc-topic", "bbc-next", "bbc-sts")}
                   for name in ("03_m_ablation", "04_softmax_variant", "07_ept")},
                # class-label initialization needs label words: no regression task here
                "06_prompt_tuning_baselines": {"tasks": ("bbc-topic", "bbc-next", "bbc-copa")}},
        cell_timeout_s=3 * 3600,
        hardware="one GPU (H100-class)",
        expected_minutes=40,  # 201 of the 366 runs took 21 min on one H100, packed by 32 (docs/SPEED.md, section 6)
    ),
    "cpu": Profile(
        name="cpu",
        description="The seeded reference: SmolLM2-135M on the BBC tasks that pass the learnability gate, 5 "
                    "seeds, 150 steps per run, dev/test held apart: Table 1's prompt methods, the m ablation and "
                    "the softmax variant, paired by seed.",
        note="CPU reference: SmolLM2-135M (causal) instead of T5 and BBC-made tasks instead of GLUE/SuperGLUE, 150 "
             "steps per run; the point is selected on 200 dev examples and scored on 500 test examples, the same "
             "for every seed; verdicts come from paired differences over seeds (README, \"Results at a glance\").",
        backbones=("smollm2-135m",),
        tasks=CPU_TASKS,
        seeds=(0, 1, 2, 3, 4),
        budget=dict(CPU_BUDGET),
        # bbc-restate (a choice between two texts, answered "1" or "2") is learned later than the pair tasks, so it
        # trains 200 steps; 96 SmolLM2 tokens would cut a third of its inputs (choice 2 lost).
        task_budget={"bbc-restate": {"max_steps": 200, "max_input_tokens": 144},
                     "bbc-copa": {"max_input_tokens": 144}, "bbc-multirc": {"max_input_tokens": 128}},
        gate_tasks=CPU_GATE_TASKS,
        gate_seeds=(0, 1, 2),  # three seeds suffice to place a task at its majority class; the tasks run five
        # bbc-restate and bbc-overlap were reference tasks when their gate runs trained: their five seeds stay
        gate_task_seeds={"bbc-restate": (0, 1, 2, 3, 4), "bbc-overlap": (0, 1, 2, 3, 4)},
        attempt_sources=("bbc-topic",),  # its runs are the gate's; ATTEMPT is then judged on bbc-paraphrase
        m_values=(16, 128, 256),
        prompt_lengths=(1, 10),
        inits=("uniform", "vocab", "labels"),
        dropout_methods=("simple", "superpos"),
        full_finetuning=False,
        # One seed and one task where a setting is outside the paper's claims or not testable here: the dropout-on
        # runs (SmolLM2 was pretrained without dropout), Lester et al.'s baselines, EPT's stages, the p' starts.
        scopes={"02_dropout_ablation": {"tasks": ("bbc-topic",), "seeds": (0,)},
                "06_prompt_tuning_baselines": {"tasks": ("bbc-topic",), "seeds": (0,)},
                "07_ept": {"tasks": ("bbc-topic",), "seeds": (0,)}},
        weights_init_scope={"tasks": ("bbc-topic",), "seeds": (0,)},
        curve_tasks=CPU_TASKS,
        cell_timeout_s=1800,
        hardware="a 2-core CPU with native bf16 (several sittings: the store resumes)",
    ),
    "quick": Profile(
        name="quick",
        description="The default of `make reproduce`: SmolLM2-135M on bbc-topic, 1 seed, 48 steps per run, every "
                    "prompt method and the paper's ablations; all notebooks within 30 minutes on a 2-core CPU.",
        note="Quick budget (one seed, 48 steps at batch 8, 64 validation examples, minutes on a CPU): it checks the "
             "pipeline end to end; one seed gives no interval, so no difference here is a verdict (profile cpu: five "
             "paired seeds, a held-out test set).",
        backbones=("smollm2-135m",),
        tasks=("bbc-topic",),
        seeds=(0,),
        budget=dict(QUICK_BUDGET),
        attempt_sources=("bbc-same-topic",),
        m_values=(16, 128),
        prompt_lengths=(1, 10),
        inits=("uniform", "vocab", "labels"),
        dropout_methods=("simple", "superpos"),
        # The p′-start ablation (5 runs, ~9 minutes here) is left to profile cpu, which runs it with 3 seeds.
        weights_inits=(),
        full_finetuning=False,  # its slowest run (every weight trains, dropout on): the one the 30 minutes lack
        cell_timeout_s=1800,
        hardware="a 2-core CPU",
        expected_minutes=30,
    ),
    "smoke": Profile(
        name="smoke",
        description="A tiny random T5 on two offline tasks, 2 steps per run; seconds per notebook, for the tests.",
        note="Smoke test: a random tiny model, 2 steps; the numbers mean nothing.",
        backbones=("tiny-t5",),
        tasks=("bbc-topic", "bbc-same-topic"),
        seeds=(0,),
        budget=dict(epochs=1, max_steps=2, batch_size=4, eval_every=1, eval_batch_size=16, train_limit=8,
                    eval_limit=8, max_input_tokens=32, dropout_rate=0.1, protocol="paper"),
        attempt_sources=("bbc-topic",),
        m_values=(1, 128),
        prompt_lengths=(1, 10),
        scopes={name: {"tasks": ("bbc-topic",)}
                for name in ("03_m_ablation", "04_softmax_variant", "06_prompt_tuning_baselines", "07_ept")},
        cell_timeout_s=300,
        hardware="any CPU",
        expected_minutes=2,
    ),
}


def get_profile(profile: str | Profile) -> Profile:
    """The profile of that name; ``ValueError`` naming the known ones otherwise."""
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise ValueError(f"profile: unknown profile {profile!r}{did_you_mean(profile, PROFILES)}; "
                         f"known: {', '.join(PROFILES)}")
    return PROFILES[profile]


def notebook_name(notebook: str) -> str:
    """``"1"``, ``"01"``, ``"01_method"``, ``"01_method.ipynb"``, ``"notebooks/01_method.ipynb"`` -> ``"01_method"``."""
    stem = str(notebook).rsplit("/", 1)[-1].removesuffix(".ipynb")
    number = stem.zfill(2) if stem.isdigit() else stem
    matches = [name for name in NOTEBOOKS if name == stem or name.split("_", 1)[0] == number]
    if len(matches) != 1:
        raise ValueError(f"notebook: unknown notebook {notebook!r}; known: {', '.join(NOTEBOOKS)}")
    return matches[0]


def weights_init_entries(p: Profile) -> list[dict]:
    """Notebook 04's p′-init ablation: SuperPos, linear and softmax, from each start of ``p.weights_inits``
    beside each variant's default (linear: one-hot; softmax: zeros, the uniform mixture)."""
    from .methods.superposition import SuperPosConfig

    entries = []
    for softmax in (False, True):
        default = SuperPosConfig(softmax=softmax).resolved_weights_init()
        for init in p.weights_inits:
            if init != default:
                entries.append({"method": "superpos", "config": {"softmax": softmax, "weights_init": init},
                                **{axis: list(values) for axis, values in p.weights_init_scope.items()}})
    return entries


def notebook_methods(notebook: str, profile: str | Profile = "quick") -> tuple[list, list]:
    """``(methods, dropout)``: the method entries and the dropout axis of a notebook's grid."""
    p = get_profile(profile)
    name = notebook_name(notebook)
    full = [FULL_FT] if p.full_finetuning else []
    if name == "01_method":
        return [*PROMPT_METHODS, *full], [False]
    if name == "02_dropout_ablation":
        return list(p.dropout_methods), [False, True]
    if name == "03_m_ablation":
        # every m starts from the same kind of p′ (one-hot, cycling over the m tokens when m < n)
        return [{"method": "superpos", "config": {"m": m}} for m in p.m_values], [False]
    if name == "04_softmax_variant":
        plain = {"method": "superpos"}
        if p.table3_backbones:
            backbones = p.scopes.get(name, {}).get("backbones") or p.backbones
            plain["backbones"] = [*backbones, *p.table3_backbones]
        return [plain, {"method": "superpos", "config": {"softmax": True}}, *weights_init_entries(p)], [False]
    if name == "05_stability_analysis":
        # Table 2's dropout-on rows are notebook 02's runs: on its tasks and seeds where the profile narrows them
        table2 = [m for m in TABLE2_METHODS if m in p.dropout_methods]
        on = {axis: list(values) for axis, values in p.scopes.get("02_dropout_ablation", {}).items()
              if axis in ("tasks", "seeds")}
        return [*table2, *({"method": m, "dropout": [True], **on} for m in table2), *full], [False]
    if name == "06_prompt_tuning_baselines":
        # Lester et al. (2021) sample vocab-init prompts among the 5,000 most frequent tokens
        lester = {"vocab": {"vocab_top_k": LESTER_VOCAB_TOP_K}}
        lengths = [{"method": "simple", "config": {"n_prompts": n, **lester["vocab"]}} for n in p.prompt_lengths]
        inits = [{"method": "simple", "config": {"init": init, **lester.get(init, {})}} for init in p.inits]
        return lengths + inits, [False]
    if name == "07_ept":
        return [*({"method": "ept", "config": EPT_STAGES[stage]} for stage in p.ept_stages), "superpos"], [False]
    raise AssertionError(name)


#: Profile fields a notebook's parameters may replace (what each notebook varies).
NOTEBOOK_FACTORS = ("m_values", "prompt_lengths", "inits", "weights_inits", "dropout_methods", "ept_stages")


def with_factors(profile: str | Profile, **factors) -> Profile:
    """The profile with the ``NOTEBOOK_FACTORS`` given (not None) replaced, checked in one line each."""
    p = get_profile(profile)
    changes = {}
    for name, values in factors.items():
        if name not in NOTEBOOK_FACTORS:
            raise ValueError(f"{name}: not a notebook factor; known: {', '.join(NOTEBOOK_FACTORS)}")
        if values is None:
            continue
        if isinstance(values, (str, int)) or not len(values):
            raise ValueError(f"{name}: must be a non-empty list, got {values!r}")
        if name == "ept_stages":
            unknown = [v for v in values if v not in EPT_STAGES]
            if unknown:
                raise ValueError(f"ept_stages: unknown stage(s) {unknown}; known: {', '.join(EPT_STAGES)}")
        changes[name] = tuple(values)
    return dataclasses.replace(p, **changes) if changes else p


def _axis(name: str, values, kind: type) -> list | None:
    """A notebook's list parameter, checked: None, or a non-empty list of ``kind`` (a string is not a list of
    names, ``5`` is not a list of seeds)."""
    if values is None:
        return None
    if isinstance(values, (str, int)) or not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{name}: must be a non-empty list, e.g. {name}=[{'0' if kind is int else repr('...')}], "
                         f"got {values!r}")
    wrong = [v for v in values if not isinstance(v, kind) or isinstance(v, bool)]
    if wrong:
        raise ValueError(f"{name}: every entry must be {'an int' if kind is int else 'a string'}, got {wrong[0]!r}")
    return list(values)


def notebook_grid(notebook: str, profile: str | Profile = "quick", *, tasks: Sequence[str] | None = None,
                  seeds: Sequence[int] | None = None, backbones: Sequence[str] | None = None,
                  **factors) -> GridSpec:
    """The grid a notebook runs under a profile. ``tasks``/``seeds``/``backbones`` and the factors of
    ``NOTEBOOK_FACTORS`` (``m_values=[16, 512]``, ...) override the profile's (a notebook's parameters; ``None``
    keeps the profile's)."""
    p = with_factors(profile, **factors)
    name = notebook_name(notebook)
    scope = p.scopes.get(name, {})
    tasks, seeds, backbones = (_axis(axis, values, kind) for axis, values, kind in
                               (("tasks", tasks, str), ("seeds", seeds, int), ("backbones", backbones, str)))
    methods, dropout = notebook_methods(name, p)
    uses_attempt = any((m if isinstance(m, str) else m["method"]) == "attempt" for m in methods)
    return GridSpec(
        backbones=list(backbones or scope.get("backbones") or p.backbones),
        tasks=list(tasks or scope.get("tasks") or p.tasks),
        methods=methods,
        dropout=dropout,
        seeds=list(seeds if seeds is not None else scope.get("seeds") or p.seeds),
        attempt_sources=list(p.attempt_sources) if uses_attempt else [],
        budget=dict(p.budget),
        task_budget={task: dict(values) for task, values in p.task_budget.items()},
    )


def gate_grids(profile: str | Profile) -> list[GridSpec]:
    """The learnability gate's runs beyond notebook 01's own (notebook 01 shows the gate): simple prompt tuning,
    dropout off, on the profile's ``gate_tasks``, with ``gate_seeds`` (or the task's ``gate_task_seeds``) and the
    profile's budget; one grid per set of seeds, none for a profile without a gate. On the profile's own tasks the
    gate reads notebook 01's simple prompt tuning runs."""
    p = get_profile(profile)
    by_seeds: dict[tuple[int, ...], list[str]] = {}
    for task in p.gate_tasks:
        by_seeds.setdefault(tuple(p.gate_task_seeds.get(task) or p.gate_seeds or p.seeds), []).append(task)
    return [GridSpec(backbones=list(p.backbones), tasks=tasks, methods=["simple"], dropout=[False], seeds=list(seeds),
                     budget=dict(p.budget), task_budget={task: dict(values) for task, values in p.task_budget.items()})
            for seeds, tasks in by_seeds.items()]


def gate_configs(profile: str | Profile) -> list:
    """Every run the learnability gate reads: notebook 01's simple prompt tuning runs on the profile's tasks, and
    the gate's own runs on ``gate_tasks`` (:func:`gate_grids`)."""
    p = get_profile(profile)
    configs = [config for config in expand(notebook_grid("01_method", p)) if config.method == "simple"]
    return configs + [config for grid in gate_grids(p) for config in expand(grid)]


def profile_configs(profile: str | Profile, notebooks: Sequence[str] | None = None) -> list:
    """Every run the notebooks (all by default) ask for under ``profile``, each once. Dependencies (ATTEMPT's
    source runs) come first; then the learnability gate's runs; then task by task in the profile's order, each
    task's runs in notebook order, so that a reproduction stopped part-way leaves whole tasks finished, every
    notebook's settings among them."""
    p = get_profile(profile)
    seen: dict[str, Any] = {}
    for notebook in notebooks or NOTEBOOKS:
        grids = [notebook_grid(notebook, p)]
        if notebook_name(notebook) == "01_method":
            grids.extend(gate_grids(p))
        for config in (config for grid in grids for config in expand(grid)):
            seen.setdefault(config.run_hash(), config)
    sources = {source for config in seen.values() for source in config.sources}
    # Then the learnability gate (simple prompt tuning, every seed), the profile's tasks and the gate's others: which
    # tasks pass it is known before any other run trains; then task by task.
    rank = {task: index for index, task in enumerate(p.tasks)}
    gate = {config.run_hash() for config in gate_configs(p)} if p.gate_tasks else set()
    ordered = sorted(enumerate(seen.items()), key=lambda item: (item[1][0] not in sources, item[1][0] not in gate,
                                                                rank.get(item[1][1].task, len(rank)), item[0]))
    return [config for _, (_, config) in ordered]


def _train_size(task: str) -> int:
    """Training rows of a task before ``train_limit`` (the hub's sizes; the BBC suite's default)."""
    from .tasks import GLUE_SPECS, SUPERGLUE_SPECS
    from .tasks.offline import DEFAULT_TRAIN_SIZE

    spec = {**GLUE_SPECS, **SUPERGLUE_SPECS}.get(task)
    return spec["sizes"][0] if spec else DEFAULT_TRAIN_SIZE


def estimated_steps(profile: str | Profile) -> dict[str, int]:
    """Optimizer steps all notebooks together train (shared runs counted once), by method, plus ``total``
    and ``runs``."""
    configs = profile_configs(profile)
    steps: dict[str, int] = {}
    for config in configs:
        rows = min(config.train_limit or 10**12, _train_size(config.task))
        count = config.max_steps or config.epochs * -(-rows // config.batch_size)
        steps[config.method] = steps.get(config.method, 0) + count
    steps["total"] = sum(steps.values())
    steps["runs"] = len(configs)
    return steps
