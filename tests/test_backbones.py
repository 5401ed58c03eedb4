"""Backbones: loading, prompt prepending, loss on targets only, dropout switch, generation, errors."""
from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from superpos.backbones import (BACKBONES, IGNORE_INDEX, SEPARATOR, Backbone, BackboneError, Batch,
                                load_backbone)

INPUTS = ["the government said the economy grew faster than expected in the third quarter",
          "a great film", "shares fell sharply on monday after the company warned on profits"]
TARGETS = ["business", "entertainment sport", "business"]


class FixedPrompt(nn.Module):
    """The simplest prompt method: ``n`` trainable vectors, the same for every example."""

    def __init__(self, backbone: Backbone, n: int = 5, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        ids = backbone.candidate_token_ids(200).cpu()
        rows = ids[torch.randint(len(ids), (n,), generator=generator)]
        self.prompt = nn.Parameter(backbone.embedding_weight.detach().cpu()[rows].clone())

    def forward(self, inputs_embeds, attention_mask):
        return self.prompt.unsqueeze(0).expand(inputs_embeds.shape[0], -1, -1), inputs_embeds


def capture_model_inputs(backbone: Backbone) -> tuple[dict, object]:
    """Record the keyword inputs of the module that sees ``[prompt, input]`` (T5 encoder / causal body)."""
    seen: dict = {}
    module = backbone.model.get_encoder() if backbone.kind == "seq2seq" else backbone.model.base_model

    def hook(module, args, kwargs):
        if kwargs.get("inputs_embeds") is not None:
            seen.update(embeds=kwargs["inputs_embeds"].shape, mask=kwargs["attention_mask"].clone())
    return seen, module.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.fixture(params=["tiny_t5", "tiny_llama"])
def tiny(request) -> Backbone:
    return request.getfixturevalue(request.param)


# -- loading
def test_registry_names_the_default_and_tiny_models():
    assert {"smollm2-135m", "tiny-t5", "tiny-llama", "google/t5-base-lm-adapt"} <= set(BACKBONES)
    assert all(isinstance(text, str) and "\n" not in text for text in BACKBONES.values())


def test_tiny_backbones_load_frozen(tiny_t5, tiny_llama):
    assert tiny_t5.kind == "seq2seq" and tiny_llama.kind == "causal"
    for backbone in (tiny_t5, tiny_llama):
        assert not any(p.requires_grad for p in backbone.model.parameters())
        assert backbone.parameter_count() < 5_000_000
        assert backbone.embedding_weight.shape[1] == backbone.embed_dim == 128
        assert backbone.dtype == torch.float32 and backbone.device.type == "cpu"
    config = tiny_t5.model.config
    assert (config.decoder_start_token_id, config.pad_token_id, config.eos_token_id) == (0, 0, 1)
    assert tiny_t5.checkpoint_dropout_rate == 0.1 and tiny_llama.checkpoint_dropout_rate == 0.0


def test_tiny_backbones_are_deterministic(tiny_t5):
    again = load_backbone("tiny-t5")
    assert torch.equal(again.embedding_weight, tiny_t5.embedding_weight)
    assert torch.equal(again.model.lm_head.weight, tiny_t5.model.lm_head.weight)


@pytest.mark.parametrize("name", ["tiny-t5", "tiny-llama"])
def test_loads_from_a_local_folder(name, tmp_path):
    original = load_backbone(name)
    original.model.save_pretrained(tmp_path)
    original.tokenizer.save_pretrained(tmp_path)
    loaded = load_backbone(str(tmp_path))
    assert loaded.kind == original.kind
    batch = original.encode(INPUTS, TARGETS, max_input_tokens=32, max_target_tokens=4)
    again = loaded.encode(INPUTS, TARGETS, max_input_tokens=32, max_target_tokens=4)
    assert torch.equal(batch.input_ids, again.input_ids) and torch.equal(batch.labels, again.labels)
    torch.testing.assert_close(loaded.loss(again, None), original.loss(batch, None))


# -- encode, prompt prepending, loss
def test_encode_pads_dynamically_and_truncates_inputs(tiny):
    batch = tiny.encode(INPUTS, TARGETS, max_input_tokens=8, max_target_tokens=3)
    assert isinstance(batch, Batch) and len(batch) == 3
    assert batch.input_ids.shape == batch.attention_mask.shape and batch.input_ids.shape[1] == 8
    assert batch.labels.shape[1] <= 3
    # Every target ends with eos, and padding is -100.
    for row in batch.labels:
        real = row[row != IGNORE_INDEX]
        assert real[-1].item() == tiny.eos_token_id
    assert batch.counted_tokens is not None  # counted from the token lists, never read back from the device
    assert batch.token_count == int(batch.attention_mask.sum()) + int((batch.labels != IGNORE_INDEX).sum())
    short = tiny.encode(["a great film"], None, max_input_tokens=64, max_target_tokens=3)
    assert short.labels is None and short.input_ids.shape[1] < 8
    if tiny.kind == "causal":  # the separator survives truncation
        separator = tiny.tokenizer(SEPARATOR, add_special_tokens=False).input_ids
        assert batch.input_ids[0, -len(separator):].tolist() == separator
    else:  # T5 inputs end with eos inside the limit
        assert batch.input_ids[0, -1].item() == tiny.eos_token_id


def test_prompt_is_prepended_after_truncation_and_mask_grows(tiny):
    n = 5
    batch = tiny.encode(INPUTS, TARGETS, max_input_tokens=8, max_target_tokens=4)
    seen, handle = capture_model_inputs(tiny)
    try:
        tiny.loss(batch, FixedPrompt(tiny, n))
    finally:
        handle.remove()
    input_len, target_len = batch.input_ids.shape[1], batch.labels.shape[1]
    if tiny.kind == "seq2seq":  # encoder only: [prompt, input]
        assert seen["embeds"][1] == n + input_len
        assert torch.equal(seen["mask"], torch.cat([torch.ones(3, n, dtype=torch.long), batch.attention_mask], 1))
    else:  # [prompt, input, target], real tokens first
        assert seen["embeds"][1] == n + input_len + target_len
        real = batch.attention_mask.sum(1) + (batch.labels != IGNORE_INDEX).sum(1) + n
        assert torch.equal(seen["mask"].sum(1), real)


def test_loss_trains_the_prompt_only(tiny):
    method = FixedPrompt(tiny)
    batch = tiny.encode(INPUTS, TARGETS, max_input_tokens=32, max_target_tokens=4)
    loss = tiny.loss(batch, method)
    assert loss.dim() == 0 and torch.isfinite(loss) and 2.0 < loss.item() < 20.0
    loss.backward()
    assert method.prompt.grad is not None and method.prompt.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.model.parameters())
    # A few steps of prompt tuning lower the loss on this batch.
    optimizer = torch.optim.Adam(method.parameters(), lr=0.05)
    first = loss.item()
    for _ in range(5):
        optimizer.zero_grad()
        loss = tiny.loss(batch, method)
        loss.backward()
        optimizer.step()
    assert tiny.loss(batch, method).item() < first


def test_loss_counts_target_tokens_and_ignores_padding(tiny):
    method = FixedPrompt(tiny)
    batch = tiny.encode(INPUTS, TARGETS, max_input_tokens=32, max_target_tokens=4)
    total, count = 0.0, 0
    for text, target in zip(INPUTS, TARGETS):
        alone = tiny.encode([text], [target], max_input_tokens=32, max_target_tokens=4)
        tokens = int((alone.labels != IGNORE_INDEX).sum())
        total += tiny.loss(alone, method).item() * tokens
        count += tokens
    assert tiny.loss(batch, method).item() == pytest.approx(total / count, rel=1e-4)


def test_causal_loss_matches_full_logits(tiny_llama):
    """The head-on-targets-only loss equals cross-entropy over the full [1, S, V] logits."""
    method = FixedPrompt(tiny_llama, n=3)
    batch = tiny_llama.encode(INPUTS[:1], TARGETS[:1], max_input_tokens=32, max_target_tokens=4)
    with torch.no_grad():
        prompt, embeds = method(tiny_llama.embed(batch.input_ids), batch.attention_mask)
        sequence = torch.cat([prompt, embeds, tiny_llama.embed(batch.labels)], dim=1)
        logits = tiny_llama.model(inputs_embeds=sequence).logits[0]
        targets = batch.labels.shape[1]
        expected = F.cross_entropy(logits[-targets - 1:-1], batch.labels[0])
        assert tiny_llama.loss(batch, method).item() == pytest.approx(expected.item(), rel=1e-5)


def test_loss_needs_targets(tiny_t5):
    with pytest.raises(ValueError, match="no targets"):
        tiny_t5.loss(tiny_t5.encode(INPUTS, None), None)


# -- dropout
def two_losses(backbone: Backbone) -> tuple[float, float]:
    method = FixedPrompt(backbone)
    batch = backbone.encode(INPUTS, TARGETS, max_input_tokens=32, max_target_tokens=4)
    backbone.train_mode(True)
    try:
        return backbone.loss(batch, method).item(), backbone.loss(batch, method).item()
    finally:
        backbone.train_mode(False)


@pytest.mark.parametrize("name", ["tiny-t5", "tiny-llama"])
def test_dropout_off_is_deterministic_in_train_mode(name):
    backbone = load_backbone(name, dropout=False)
    assert backbone.dropout_rate == 0.0
    first, second = two_losses(backbone)
    assert first == second
    if name == "tiny-t5":
        assert backbone.model.config.dropout_rate == 0.0
        assert all(m.p == 0.0 for m in backbone.model.modules() if isinstance(m, nn.Dropout))


def test_dropout_on_keeps_t5_checkpoint_rate():
    backbone = load_backbone("tiny-t5", dropout=True)
    assert backbone.dropout_rate == 0.1 and backbone.model.config.dropout_rate == 0.1
    first, second = two_losses(backbone)
    assert first != second
    backbone.set_dropout(False)
    assert len(set(two_losses(backbone))) == 1
    backbone.set_dropout(True, 0.3)
    assert {m.p for m in backbone.model.modules() if isinstance(m, nn.Dropout)} == {0.3}


def test_dropout_on_llama_needs_a_rate():
    with pytest.raises(ValueError, match="dropout_rate"):
        load_backbone("tiny-llama", dropout=True)
    backbone = load_backbone("tiny-llama", dropout=True, dropout_rate=0.1)
    first, second = two_losses(backbone)
    assert first != second
    # Eval mode: no dropout even when enabled.
    batch = backbone.encode(INPUTS, TARGETS, max_input_tokens=32, max_target_tokens=4)
    assert backbone.loss(batch, None).item() == backbone.loss(batch, None).item()
    backbone.set_dropout(False)  # removes the hooks too
    assert len(set(two_losses(backbone))) == 1


# -- vocabulary
def test_candidate_token_ids(tiny):
    ids = tiny.candidate_token_ids()
    assert ids.dtype == torch.long and len(ids) == len(set(ids.tolist())) > 1000
    assert int(ids.max()) < len(tiny.tokenizer) <= tiny.embedding_weight.shape[0]
    assert not set(ids.tolist()) & set(tiny.tokenizer.all_special_ids)
    assert torch.equal(tiny.candidate_token_ids(100), ids[:100])
    assert len(tiny.candidate_token_ids(10 ** 6)) == len(ids)
    if tiny.kind == "seq2seq":  # T5: the table is padded past the tokenizer, and extra ids are special
        assert tiny.embedding_weight.shape[0] > len(tiny.tokenizer)
        extra = tiny.tokenizer.convert_tokens_to_ids("<extra_id_0>")
        assert extra not in set(ids.tolist())


def test_token_ids_match_targets(tiny):
    batch = tiny.encode(["x"], ["business"], max_input_tokens=8, max_target_tokens=8)
    labels = batch.labels[0][batch.labels[0] != IGNORE_INDEX].tolist()
    assert labels == tiny.token_ids("business") + [tiny.eos_token_id]


# -- generation
def test_padded_batch_generates_as_one_at_a_time(tiny):
    method = FixedPrompt(tiny, n=4)
    texts = INPUTS + ["hello"]
    batch = tiny.encode(texts, None, max_input_tokens=24, max_target_tokens=8)
    assert batch.attention_mask.min() == 0  # really padded
    for with_method in (None, method):
        batched = tiny.generate_ids(batch, with_method, max_new_tokens=5)
        alone = [tiny.generate_ids(tiny.encode([t], None, max_input_tokens=24, max_target_tokens=8), with_method, 5)[0]
                 for t in texts]
        assert batched == alone
        assert any(len(ids) > 0 for ids in batched)
    strings = tiny.generate(batch, method, max_new_tokens=6)
    assert len(strings) == len(texts) and all(s == s.strip() for s in strings)


def test_generation_restores_train_mode_and_skips_padding_rows(tiny_t5):
    batch = tiny_t5.encode(INPUTS, None, max_input_tokens=24, max_target_tokens=8)
    tiny_t5.train_mode(True)
    try:
        ids = tiny_t5.generate_ids(batch, None, max_new_tokens=8)
        assert tiny_t5.model.training
    finally:
        tiny_t5.train_mode(False)
    assert all(i < len(tiny_t5.tokenizer) for row in ids for i in row)


def test_causal_generation_matches_transformers_generate(tiny_llama):
    """The hand-written KV-cache loop agrees with ``model.generate`` on a single unpadded input."""
    batch = tiny_llama.encode(INPUTS[:1], None, max_input_tokens=32, max_target_tokens=8)
    ours = tiny_llama.generate_ids(batch, None, max_new_tokens=6)[0]
    theirs = tiny_llama.model.generate(batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=6,
                                       do_sample=False, eos_token_id=tiny_llama.eos_token_id,
                                       pad_token_id=tiny_llama.pad_token_id)[0, batch.input_ids.shape[1]:].tolist()
    assert ours == theirs[: len(ours)] and (len(ours) == 6 or theirs[len(ours)] == tiny_llama.eos_token_id)


# -- errors
def assert_one_line_error(name: str, seconds: float = 2.0) -> str:
    started = time.perf_counter()
    with pytest.raises(BackboneError) as info:
        load_backbone(name)
    assert time.perf_counter() - started < seconds
    message = str(info.value)
    assert "\n" not in message and "smollm2-135m" in message
    return message


@pytest.mark.parametrize("name", ["no-such-backbone", "google/t5-base-lm-adapt", "someone/missing-model"])
def test_unknown_or_unreachable_names_fail_fast_in_one_line(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = assert_one_line_error(name)
    assert "HF_HUB_OFFLINE" in message and name in message


def test_unreachable_hub_without_offline_variables_fails_fast(monkeypatch):
    from superpos.backbones import load as load_module

    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(load_module, "hub_reachable", lambda timeout=1.5: False)
    message = assert_one_line_error("google/t5-base-lm-adapt")
    assert "HF_HUB_OFFLINE=1" in message  # tells how to skip the lookup next time


def test_hub_id_in_the_local_hf_cache_loads_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--google--t5-small-lm-adapt"
    snapshot = repo / "snapshots" / ("0" * 40)
    original = load_backbone("tiny-t5")
    original.model.save_pretrained(snapshot)
    original.tokenizer.save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    backbone = load_backbone("google/t5-small-lm-adapt")
    assert backbone.kind == "seq2seq" and "cache" in backbone.source
    assert torch.equal(backbone.embedding_weight, original.embedding_weight)


def test_hub_reachability_check_is_bounded():
    from superpos.backbones import load as load_module

    from superpos import paths

    paths._REACHABLE.clear()
    started = time.perf_counter()
    load_module.hub_reachable(timeout=1.0)
    assert time.perf_counter() - started < 1.5


def test_dtype_and_device_errors():
    with pytest.raises(BackboneError, match="overflows"):
        load_backbone("tiny-t5", dtype=torch.float16)
    with pytest.raises(BackboneError, match="dtype"):
        load_backbone("tiny-t5", dtype="float8")
    if not torch.cuda.is_available():
        with pytest.raises(BackboneError, match="CUDA"):
            load_backbone("tiny-t5", device="cuda")
    backbone = load_backbone("tiny-llama", dtype="bf16")
    assert backbone.dtype == torch.bfloat16
    batch = backbone.encode(INPUTS, TARGETS, max_input_tokens=16, max_target_tokens=4)
    assert torch.isfinite(backbone.loss(batch, FixedPrompt(backbone)))


@pytest.mark.parametrize("device", ["cuda:abc", "cuda:-1", "cuda:", "tpu", "gpu", "CPU", " cpu", None, 0])
def test_a_malformed_device_is_a_one_line_value_error(device):
    from superpos.backbones import resolve_device

    with pytest.raises(ValueError, match=r"^device: must be 'auto', 'cpu' or 'cuda\[:i\]', got ") as error:
        resolve_device(device)
    assert isinstance(error.value, BackboneError) and "\n" not in str(error.value)
    with pytest.raises(BackboneError, match=r"^device: must be"):
        load_backbone("tiny-t5", device=device)


def test_devices_that_resolve():
    from superpos.backbones import resolve_device

    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        assert resolve_device("cuda:0") == torch.device("cuda:0")
        with pytest.raises(BackboneError, match=r"^device: cuda:\d+ asked for, but torch sees \d+ GPU"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        for device in ("cuda", "cuda:0", torch.device("cuda")):
            with pytest.raises(BackboneError, match=r"^device: cuda(:0)? asked for, but CUDA is not available"):
                resolve_device(device)


# -- cache folders
def test_cache_folders_are_built_once_and_whole(tmp_path):
    import threading

    from superpos.backbones.files import build_atomically

    calls = []

    def build(folder):
        calls.append(folder)
        time.sleep(0.2)
        (folder / "weights").write_text("done")

    target = tmp_path / "model"
    threads = [threading.Thread(target=build_atomically, args=(target, build)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and (target / "weights").read_text() == "done"

    def interrupted(folder):
        (folder / "half").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_atomically(tmp_path / "other", interrupted)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["model"]


# -- the embedded default
@pytest.mark.slow
def test_smollm2_loads_offline_and_a_soft_prompt_steers_it(smollm2):
    assert smollm2.kind == "causal" and smollm2.embed_dim == 576
    assert 130e6 < smollm2.parameter_count() < 140e6
    assert smollm2.checkpoint_dropout_rate == 0.0
    from superpos.backbones import smollm2_folder

    assert (smollm2_folder() / "model.safetensors").is_file()  # converted once, then loaded from the cache
    started = time.perf_counter()
    again = load_backbone("smollm2-135m")
    assert time.perf_counter() - started < 30.0  # well under a second on a quiet machine
    assert torch.equal(again.embedding_weight[:100], smollm2.embedding_weight[:100])
    del again
    # Targets end with the end-of-turn token the model was tuned to emit, whatever transformers release converted it.
    assert smollm2.tokenizer.convert_ids_to_tokens(smollm2.eos_token_id) == "<|im_end|>"
    assert smollm2.eos_token_id == smollm2.model.config.eos_token_id == smollm2.pad_token_id == 2

    # The pretrained model answers a trivial question ("The answer is: Paris"), batched or not.
    texts = ["Paris is the capital of France. Question: What is the capital of France?",
             "The sky is blue. Question: What color is the sky?"]
    batch = smollm2.encode(texts, None, max_input_tokens=64, max_target_tokens=4)
    answers = smollm2.generate(batch, None, max_new_tokens=8)
    assert "Paris" in answers[0] and "blue" in answers[1].lower()
    alone = smollm2.generate(smollm2.encode(texts[1:], None, max_input_tokens=64, max_target_tokens=4), None, 8)
    assert alone[0] == answers[1]

    # The loss is on the right targets: the true answers cost less than swapped ones.
    right = smollm2.loss(smollm2.encode(texts, ["Paris", "blue"], max_input_tokens=64, max_target_tokens=4), None)
    wrong = smollm2.loss(smollm2.encode(texts, ["blue", "Paris"], max_input_tokens=64, max_target_tokens=4), None)
    assert torch.isfinite(right) and right.item() < wrong.item() - 1.0

    # A soft prompt of sampled token embeddings moves the next-token distribution.
    plain = smollm2.next_token_logits(batch, None).log_softmax(-1)
    prompted = smollm2.next_token_logits(batch, FixedPrompt(smollm2, n=10)).log_softmax(-1)
    kl = F.kl_div(prompted, plain, log_target=True, reduction="batchmean")
    assert kl.item() > 0.01


@pytest.mark.parametrize("fixture", ["tiny_t5", "tiny_llama"])
def test_truncated_count_matches_what_encode_cuts(fixture, request):
    backbone = request.getfixturevalue(fixture)
    inputs = ["a b", "one two three four five six seven eight nine ten", "x " * 30, "short"]
    cut = [backbone.encode([text], max_input_tokens=8).input_ids.shape[1] <
           backbone.encode([text], max_input_tokens=512).input_ids.shape[1] for text in inputs]
    assert backbone.truncated_count(inputs, 8) == sum(cut) >= 1


def test_special_tokens_follow_the_model_config(tiny_llama):
    """A tokenizer whose eos/pad disagree with the config (as some GGUF conversions give) is set right."""
    from superpos.backbones.load import align_special_tokens

    tokenizer, config = tiny_llama.tokenizer, tiny_llama.model.config
    wanted = (tokenizer.eos_token, tokenizer.pad_token)
    tokenizer.eos_token = tokenizer.pad_token = tokenizer.bos_token
    assert tokenizer.eos_token_id != config.eos_token_id
    try:
        align_special_tokens(config, tokenizer)
        assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (config.eos_token_id, config.pad_token_id)
        assert (tokenizer.eos_token, tokenizer.pad_token) == wanted
    finally:
        tokenizer.eos_token, tokenizer.pad_token = wanted


def test_tiny_t5_has_an_untied_head_like_t5_v1_1():
    """T5 v1.1 checkpoints untie the LM head from the input embeddings; the T5 path's tests must run on that."""
    from superpos.backbones import load_backbone

    model = load_backbone("tiny-t5", device="cpu", dtype="fp32").model
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    assert not model.config.tie_word_embeddings
    assert not torch.equal(model.lm_head.weight, model.shared.weight)
