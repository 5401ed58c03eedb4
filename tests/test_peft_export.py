"""PEFT interop: a fixed prompt exported by superpos loads with ``PeftModel.from_pretrained`` and gives the
same logits and loss as superpos' own backbone path, on the tiny seq2seq and causal backbones; a finished run
exports as an adapter plus model card that plain transformers + peft (no superpos) predict with as superpos does."""
from __future__ import annotations

import copy
import json
import os
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from superpos.export import export_run, input_template, model_input
from superpos.methods import build_method, export_peft_adapter, read_peft_prompt
from superpos.methods.peft_export import SMOLLM2_HUB_ID, public_model_id

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")

TINY = {"tiny-t5": "tiny_t5", "tiny-llama": "tiny_llama"}
INPUTS = ["the film was a delight from start to end", "dull and far too long"]
TARGETS = ["positive", "negative"]
CONFIGS = {"simple": {}, "superpos": {"m": 64}, "residual": {}}


def tiny_backbone(request, name):
    try:
        return request.getfixturevalue(TINY[name])
    except pytest.FixtureLookupError:
        from superpos.backbones import load_backbone

        return load_backbone(name)


def trained_method(backbone, name):
    """A method moved off its init (so the test is not about the init), PEFT-exportable."""
    method = build_method({"method": name, **CONFIGS[name]}, backbone, seed=1)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in method.trainable_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator).to(p.device))
    return method.eval()


def superpos_logits(backbone, method, batch, decoder_input_ids=None):
    """The superpos path: method(inputs_embeds) -> prompt prepended -> the frozen model."""
    prompt, embeds = method(backbone.embed(batch.input_ids), batch.attention_mask)
    embeds = torch.cat([prompt, embeds], dim=1)
    mask = torch.cat([batch.attention_mask.new_ones(prompt.shape[:2]), batch.attention_mask], dim=1)
    if backbone.kind == "seq2seq":
        return backbone.model(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
    return backbone.model(inputs_embeds=embeds, attention_mask=mask).logits


@pytest.mark.parametrize("backbone_name", list(TINY))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_peft_adapter_reproduces_superpos_logits(request, tmp_path, backbone_name, name):
    backbone = tiny_backbone(request, backbone_name)
    method = trained_method(backbone, name)
    folder = export_peft_adapter(method, backbone, tmp_path / "adapter")

    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == method.n_prompts
    assert config["num_transformer_submodules"] == 1 and config["token_dim"] == backbone.embed_dim
    assert config["task_type"] == ("SEQ_2_SEQ_LM" if backbone.kind == "seq2seq" else "CAUSAL_LM")
    assert config["base_model_name_or_path"] is None  # a tiny model lives only in superpos: no id to name
    assert torch.equal(read_peft_prompt(folder), method.export_prompt())  # the projected prompt

    # a copy: PEFT hooks the model it wraps (input-grad hooks), and the tiny backbones are shared
    peft_model = peft.PeftModel.from_pretrained(copy.deepcopy(backbone.model), str(folder)).eval()
    assert peft_model.get_prompt_embedding_to_save("default").shape == (method.n_prompts, backbone.embed_dim)
    batch = backbone.encode(INPUTS, TARGETS, max_input_tokens=24, max_target_tokens=4)
    with torch.no_grad():
        if backbone.kind == "seq2seq":
            decoder_input_ids = backbone.model.prepare_decoder_input_ids_from_labels(labels=batch.labels)
            ours = superpos_logits(backbone, method, batch, decoder_input_ids)
            theirs = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                decoder_input_ids=decoder_input_ids).logits
            ours_loss = backbone.loss(batch, method)
            theirs_loss = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                     labels=batch.labels).loss
        else:
            ours = superpos_logits(backbone, method, batch)
            theirs = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            # loss on one example at a time (no padding between input and target)
            ours_loss, theirs_loss = [], []
            for i in range(len(INPUTS)):
                one = backbone.encode(INPUTS[i:i + 1], TARGETS[i:i + 1], max_input_tokens=24,
                                      max_target_tokens=4)
                ids = torch.cat([one.input_ids, one.labels], dim=1)
                labels = torch.cat([torch.full_like(one.input_ids, -100), one.labels], dim=1)
                ours_loss.append(backbone.loss(one, method))
                theirs_loss.append(peft_model(input_ids=ids, attention_mask=torch.ones_like(ids),
                                              labels=labels).loss)
            ours_loss, theirs_loss = torch.stack(ours_loss), torch.stack(theirs_loss)
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # and the prompt matters: without it the logits differ
        if backbone.kind == "seq2seq":
            plain = backbone.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                   decoder_input_ids=decoder_input_ids).logits
        else:
            plain = backbone.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            ours = ours[:, method.n_prompts:]
    assert not torch.allclose(ours, plain, atol=1e-3)
    assert torch.allclose(ours_loss, theirs_loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["attempt", "ept"])
def test_input_dependent_methods_do_not_export(request, tmp_path, name):
    backbone = tiny_backbone(request, "tiny-llama")
    sources = backbone.embedding_weight.detach()[:20].float().view(2, 10, -1) if name == "attempt" else None
    method = build_method({"method": name}, backbone, source_prompts=sources)
    with pytest.raises(NotImplementedError, match=name):
        export_peft_adapter(method, backbone, tmp_path)


# ---------------------------------------------------------------- a finished run -> adapter + model card
HELPER = Path(__file__).with_name("peft_plain_predict.py")
EXAMPLES = 4  # test examples predicted outside superpos


def test_public_model_ids(tmp_path):
    assert public_model_id("smollm2-135m") == SMOLLM2_HUB_ID  # not the local folder its GGUF is converted into
    assert public_model_id("google/t5-base-lm-adapt") == "google/t5-base-lm-adapt"
    assert public_model_id("tiny-llama") is None and public_model_id("tiny-t5") is None
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert public_model_id(str(tmp_path / "model")) == str((tmp_path / "model").resolve())


@pytest.mark.parametrize("backbone_name", list(TINY))
def test_model_input_is_what_encode_builds(request, backbone_name):
    """The card's template tokenized in one call gives the ids superpos' encode gives (input, then separator)."""
    from superpos.tasks import get_task

    backbone = tiny_backbone(request, backbone_name)
    texts = [example.input_text for example in get_task("bbc-topic").examples("validation")[:50]]
    for text in texts:
        assert backbone.tokenizer(model_input(backbone, text)).input_ids == \
            backbone.encode([text], max_input_tokens=512).input_ids[0].tolist()
    assert model_input(backbone, "x").endswith("\nAnswer:") == (backbone.kind == "causal")


@pytest.mark.parametrize("method", ["ept", "attempt", "full"])
def test_export_run_refuses_methods_without_peft_equivalent(tmp_path, method):
    record = {"hash": "0" * 16, "status": "done", "config": {"method": method, "backbone": "tiny-llama"}}
    with pytest.raises(ValueError, match=f"^{method}: .*simple, superpos, residual"):
        export_run(record, tmp_path / "adapter")
    with pytest.raises(ValueError, match="status 'failed'"):
        export_run({**record, "status": "failed", "config": {"method": "simple"}}, tmp_path / "adapter")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny-llama SuperPos run on bbc-topic, 2 steps, in its own store: ``(record, store)``."""
    from superpos.engine import ResultsStore, RunConfig, run

    config = RunConfig(backbone="tiny-llama", task="bbc-topic", method="superpos", method_config={"m": 16},
                       max_steps=2, batch_size=4, eval_every=2, eval_batch_size=8, train_limit=16, eval_limit=8,
                       max_input_tokens=128, device="cpu", seed=0)
    store = ResultsStore(tmp_path_factory.mktemp("peft-run") / "store")
    record = run(config, store, progress=False)
    assert record["status"] == "done" and record["test_predictions"]
    return record, store


def load_file_prompt(path) -> torch.Tensor:
    """The best-point prompt ``[n, d]`` of a store's ``prompts/<hash>.safetensors``."""
    from safetensors.torch import load_file

    return load_file(str(path))["prompt"]


def card_parts(card: str) -> tuple[str, str]:
    """``(TEMPLATE, the five-line example)`` read from a model card."""
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    template = json.loads(re.search(r'^TEMPLATE = (".*")$', blocks[0], flags=re.M).group(1))
    return template, blocks[1]


def test_exported_run_predicts_like_superpos_without_superpos(tiny_llama, tiny_run, tmp_path):
    from superpos.backbones import SEPARATOR
    from superpos.engine.config import as_run_config
    from superpos.engine.evaluate import predict
    from superpos.methods import load_method
    from superpos.tasks import METRIC_LABELS, get_task

    record, store = tiny_run
    base = tmp_path / "tiny-llama-base"  # the tiny model has no hub id: a saved copy is the base for this test
    tiny_llama.model.save_pretrained(str(base))
    tiny_llama.tokenizer.save_pretrained(str(base))
    folder = export_run(record, tmp_path / "adapter", store=store, base_model=str(base))

    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base) and config["task_type"] == "CAUSAL_LM"
    # the weights are the run's best-point prompt; the record file and the hash give the same adapter
    best_prompt = load_file_prompt(store.root / record["prompt_path"])
    assert torch.equal(read_peft_prompt(folder), best_prompt)
    for source, where in ((record["hash"], store), (store.record_path(record["hash"]), None)):
        again = export_run(source, tmp_path / "again", store=where, base_model=str(base))
        assert torch.equal(read_peft_prompt(again), best_prompt)
        card = (again / "README.md").read_text().replace('("again")', '("adapter")')
        assert card == (folder / "README.md").read_text()

    # the card: template with "\nAnswer:", label words, the record's scores and steps
    card = (folder / "README.md").read_text()
    task = get_task("bbc-topic")
    template, code = card_parts(card)
    assert template == input_template(task) + SEPARATOR == "bbc-topic sentence: {sentence}\nAnswer:"
    assert ", ".join(f"`{word}`" for word in task.label_words) in card
    best, lenient = record["best"], record["best_lenient"]
    assert f"{best['test']['score']:.2f}" in card and f"{lenient['test']['lenient_score']:.2f}" in card
    assert f"| {best['step']} |" in card and f"| {lenient['step']} |" in card
    metric = task.metric_names[0]
    assert f"{METRIC_LABELS[metric]} {best['test']['metrics'][metric]:.2f}" in card
    assert len(code.strip().splitlines()) == 5 and "superpos" not in code
    assert f"max_new_tokens={record['data']['max_new_tokens']}" in code

    # inputs built from the card's template and the task's rows; superpos' predictions for them
    splits = as_run_config(record["config"]).splits()
    rows = {task.example(row, "validation", i).uid: row for i, row in enumerate(task.rows("validation"))}
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    chosen = list(range(EXAMPLES))
    texts = [template.format(**{f: " ".join(str(rows[splits.test[i].uid][f]).split()) for f in fields})
             for i in chosen]
    assert texts == [splits.test[i].input_text + SEPARATOR for i in chosen]
    method = load_method(store.root / record["state_path"], tiny_llama)
    ours = predict(tiny_llama, method, [splits.test[i] for i in chosen], batch_size=8,
                   max_new_tokens=record["data"]["max_new_tokens"], max_input_tokens=128)
    assert ours == [record["test_predictions"][i] for i in chosen]
    plain = predict(tiny_llama, None, [splits.test[i] for i in chosen], batch_size=8,
                    max_new_tokens=record["data"]["max_new_tokens"], max_input_tokens=128)
    assert plain != ours  # the prompt changes these predictions: matching them below needs the adapter

    request = tmp_path / "request.json"
    request.write_text(json.dumps({"texts": texts, "max_new_tokens": record["data"]["max_new_tokens"],
                                   "card_code": code}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(HELPER), folder.name, str(request)], cwd=folder.parent, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["predictions"] == ours
    # the card's own example prints what superpos predicted for its input, as the card says
    said = re.search(r"generated `(.*?)` for this input", card).group(1)
    assert result["card_output"] == said


def test_export_run_falls_back_to_the_prompt_file(tiny_run, tmp_path):
    """Committed references keep prompts, not states: the best-point prompt file exports as it is."""
    from superpos.engine import ResultsStore

    record, store = tiny_run
    copy_root = tmp_path / "store"
    (copy_root / "prompts").mkdir(parents=True)
    (copy_root / "prompts" / Path(record["prompt_path"]).name).write_bytes((store.root / record["prompt_path"])
                                                                            .read_bytes())
    folder = export_run(record, tmp_path / "adapter", store=ResultsStore(copy_root))
    assert torch.equal(read_peft_prompt(folder), load_file_prompt(store.root / record["prompt_path"]))
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] is None
    assert "base_model_name_or_path` is null" in (folder / "README.md").read_text()
    (copy_root / "prompts" / Path(record["prompt_path"]).name).unlink()
    with pytest.raises(ValueError, match="no best-point state or prompt file"):
        export_run(record, tmp_path / "none", store=ResultsStore(copy_root))
