"""The fast causal training loss (backbones/fast.py) gives the Hugging Face path's loss and gradients."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from superpos.backbones import fast, load_backbone
from superpos.backbones.loss import prompted_inputs, with_prompt
from superpos.methods import build_method

INPUTS = ["the government said the economy grew faster than expected in the third quarter",
          "a great film", "shares fell sharply on monday after the company warned on profits", "goal!"]
TARGETS = ["business", "entertainment sport", "business", "sports"]


@pytest.fixture(scope="module")
def llama():
    return load_backbone("tiny-llama")


class PerExample(nn.Module):
    """An input-dependent prompt (as ATTEMPT's): the shared-prefix shortcut must not apply."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, inputs_embeds, attention_mask):
        prompt, embeds = self.inner(inputs_embeds, attention_mask)
        return prompt + inputs_embeds.mean(1, keepdim=True), embeds


def loss_and_grads(backbone, batch, method, use_fast):
    backbone.fast_loss = use_fast
    try:
        loss = backbone.loss(batch, method)
        params = [] if method is None else (method.trainable_parameters() if hasattr(method, "trainable_parameters")
                                            else [p for p in method.parameters() if p.requires_grad])
        grads = torch.autograd.grad(loss, params) if params else []
    finally:
        backbone.fast_loss = True
    return loss.detach(), grads


@pytest.mark.parametrize("kind", ["simple", "superpos", "per-example", "none"])
def test_fast_loss_equals_the_hugging_face_path(llama, kind):
    assert fast.supported(llama.model)
    method = None
    if kind != "none":
        method = build_method({"method": "simple" if kind == "per-example" else kind}, llama, seed=0)
        if kind == "per-example":
            method = PerExample(method)
    batch = llama.encode(INPUTS, TARGETS, max_input_tokens=16, max_target_tokens=4)
    assert (batch.attention_mask == 0).any() and (batch.labels == -100).any()  # padding on both sides
    slow_loss, slow_grads = loss_and_grads(llama, batch, method, use_fast=False)
    fast_loss, fast_grads = loss_and_grads(llama, batch, method, use_fast=True)
    assert fast_loss.item() == pytest.approx(slow_loss.item(), rel=1e-5)
    for slow, quick in zip(slow_grads, fast_grads):
        assert torch.allclose(slow, quick, rtol=1e-4, atol=1e-6 * slow.abs().max().item())


def test_full_fine_tuning_gets_the_same_weight_gradients():
    backbone = load_backbone("tiny-llama")  # its own copy: full fine-tuning un-freezes the weights
    method = build_method({"method": "full"}, backbone, seed=0)
    batch = backbone.encode(INPUTS, TARGETS, max_input_tokens=16, max_target_tokens=4)
    slow_loss, slow_grads = loss_and_grads(backbone, batch, method, use_fast=False)
    fast_loss, fast_grads = loss_and_grads(backbone, batch, method, use_fast=True)
    assert fast_loss.item() == pytest.approx(slow_loss.item(), rel=1e-5) and len(fast_grads) > 10
    for slow, quick in zip(slow_grads, fast_grads):
        assert torch.allclose(slow, quick, rtol=1e-4, atol=1e-5 * max(slow.abs().max().item(), 1e-6))


def test_dropout_and_hooks_take_the_standard_path(llama):
    """Dropout acting (train mode) or anyone else's hook: the standard path. In eval mode the dropout switch's
    own hooks do nothing, so the fast path (evaluation's first generation step) stays exact."""
    assert fast.supported(llama.model)
    llama.set_dropout(True, 0.1)
    llama.train_mode(True)
    try:
        assert not fast.supported(llama.model) and fast.supported(llama.model, training=False)
        llama.train_mode(False)
        assert fast.supported(llama.model) and not fast.supported(llama.model, training=True)
        handle = llama.model.model.layers[0].mlp.register_forward_hook(lambda module, args, output: None)
        assert not fast.supported(llama.model)
        handle.remove()
    finally:
        llama.set_dropout(False)
        llama.train_mode(False)
    assert fast.supported(llama.model) and fast.supported(llama.model, training=True)
    handle = llama.model.base_model.register_forward_pre_hook(lambda module, args: None)
    try:
        assert not fast.supported(llama.model)
    finally:
        handle.remove()


def test_t5_is_not_routed_to_the_causal_fast_path():
    assert not fast.supported(load_backbone("tiny-t5").model)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_by_roll_is_llamas_rotary_embedding_bit_for_bit(dtype):
    """``x * cos + roll(x) * signed_sin`` is Hugging Face's ``x * cos + rotate_half(x) * sin`` exactly, and so is
    its gradient: rotate_half only moves and negates entries, which the roll and the signs do exactly."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, 8, generator=generator).to(dtype).requires_grad_(True)  # [N, H, hd]
    angles = torch.randn(7, 4, generator=generator)
    cos, sin = torch.cat([angles.cos()] * 2, -1).to(dtype), torch.cat([angles.sin()] * 2, -1).to(dtype)  # [N, hd]
    assert torch.equal(fast._signed_sin(torch.tensor([[1.0, 2.0, 3.0, 4.0]])), torch.tensor([[-1.0, -2.0, 3.0, 4.0]]))

    ours = fast._rope(x, cos, fast._signed_sin(sin))
    theirs, _ = apply_rotary_pos_emb(x, x, cos, sin, unsqueeze_dim=1)  # cos [N, 1, hd] against x [N, H, hd]
    assert torch.equal(ours, theirs)
    weights = torch.randn(ours.shape, generator=generator).to(dtype)
    ours_grad, = torch.autograd.grad((ours * weights).sum(), x)
    theirs_grad, = torch.autograd.grad((theirs * weights).sum(), x)
    assert torch.equal(ours_grad, theirs_grad)


@pytest.mark.parametrize("masking", ["causal", "shared mask", "per-row mask"])
def test_bf16_attention_on_a_cpu_is_the_float32_kernel_on_widened_inputs(masking):
    """In bf16 on a CPU, ``fast.attention`` is the fused kernel on the inputs widened to float32 (exact), its
    output rounded back: equal to that, and within bf16 rounding of the float64 attention."""
    generator = torch.Generator().manual_seed(0)
    B, H, kv_heads, Sq, Sk, hd = 2, 6, 2, 5, 5 if masking == "causal" else 8, 4
    q, k, v = (torch.randn(B, heads, length, hd, generator=generator).bfloat16()
               for heads, length in ((H, Sq), (kv_heads, Sk), (kv_heads, Sk)))
    mask = None
    if masking != "causal":  # every query keeps its first key: no row is masked out entirely
        allowed = torch.rand(*((Sq, Sk) if masking == "shared mask" else (B, 1, Sq, Sk)), generator=generator) < 0.6
        allowed[..., 0] = True
        mask = torch.where(allowed, 0.0, float("-inf")).bfloat16()

    def sdpa(*tensors, dtype):
        q_, k_, v_ = (t.to(dtype) for t in tensors)
        return torch.nn.functional.scaled_dot_product_attention(
            q_, k_, v_, attn_mask=None if mask is None else mask.to(dtype), is_causal=masking == "causal", scale=0.3,
            enable_gqa=True)

    ours = fast.attention(q, k, v, mask=mask, causal=masking == "causal", scale=0.3)
    assert ours.dtype == torch.bfloat16 and ours.shape == (B, H, Sq, hd)
    assert torch.equal(ours, sdpa(q, k, v, dtype=torch.float32).bfloat16())
    assert torch.allclose(ours.double(), sdpa(q, k, v, dtype=torch.float64), atol=1e-2)


@pytest.mark.parametrize("kind", ["simple", "per-example"])
def test_fast_loss_in_bf16_agrees_with_the_hugging_face_path(kind):
    """In bf16 the fast path attends in float32 on a CPU, the Hugging Face path by its own bf16 attention: the
    losses agree to bf16 rounding, and the prompt gradients point the same way."""
    backbone = load_backbone("tiny-llama", dtype="bf16")
    method = build_method({"method": "simple"}, backbone, seed=0)
    if kind == "per-example":
        method = PerExample(method)
    batch = backbone.encode(INPUTS, TARGETS, max_input_tokens=16, max_target_tokens=4)
    slow_loss, slow_grads = loss_and_grads(backbone, batch, method, use_fast=False)
    fast_loss, fast_grads = loss_and_grads(backbone, batch, method, use_fast=True)
    assert fast_loss.item() == pytest.approx(slow_loss.item(), rel=2e-2)
    for slow, quick in zip(slow_grads, fast_grads):
        cosine = torch.nn.functional.cosine_similarity(slow.float().flatten(), quick.float().flatten(), dim=0)
        assert cosine > 0.99


@pytest.fixture
def compile_setting(monkeypatch):
    """Set ``SUPERPOS_COMPILE`` for one test; the process's compile state is restored afterwards."""
    saved = fast._compiled_layer, fast._compile_failure
    yield lambda value: monkeypatch.setenv(fast.COMPILE_VARIABLE, value)
    fast._compiled_layer, fast._compile_failure = saved


def test_layers_compile_by_default_only_in_bf16_on_a_cpu(compile_setting):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert fast.compiles(torch.bfloat16, cpu) and fast.compiles(torch.float16, cpu)
    assert not fast.compiles(torch.float32, cpu) and not fast.compiles(torch.bfloat16, cuda)
    assert fast.layers_state(torch.float32, cpu) == "eager" and fast.layers_state(torch.bfloat16, cpu) == "compiled"
    compile_setting("0")
    assert not fast.compiles(torch.bfloat16, cpu)
    compile_setting("1")
    assert fast.compiles(torch.float32, cpu) and fast.compiles(torch.bfloat16, cuda)
    compile_setting("sometimes")
    with pytest.raises(ValueError, match="SUPERPOS_COMPILE: must be auto, 0 or 1"):
        fast.compiles(torch.bfloat16, cpu)


@pytest.mark.parametrize("kind", ["simple", "per-example"])
def test_compiled_layers_compute_what_the_eager_layers_compute(compile_setting, kind):
    """bf16 on a CPU: the compiled decoder layers (fused elementwise kernels) give the eager layers' loss to bf16
    rounding and the same prompt gradient direction; a second batch of other lengths reuses the one graph."""
    from torch._dynamo.utils import counters

    backbone = load_backbone("tiny-llama", dtype="bf16")
    method = build_method({"method": "simple"}, backbone, seed=0)
    if kind == "per-example":
        method = PerExample(method)
    batches = [backbone.encode(INPUTS, TARGETS, max_input_tokens=16, max_target_tokens=4),
               backbone.encode(INPUTS[:3], TARGETS[:3], max_input_tokens=9, max_target_tokens=3)]
    compile_setting("0")
    eager = [loss_and_grads(backbone, batch, method, use_fast=True) for batch in batches]
    compile_setting("auto")
    graphs = counters["stats"]["unique_graphs"]
    compiled = [loss_and_grads(backbone, batch, method, use_fast=True) for batch in batches]
    assert fast._compile_failure is None and fast._compiled_layer is not None
    assert counters["stats"]["unique_graphs"] - graphs <= 1  # dynamic shapes: no graph per batch shape
    for (eager_loss, eager_grads), (compiled_loss, compiled_grads) in zip(eager, compiled):
        assert compiled_loss.item() == pytest.approx(eager_loss.item(), rel=2e-2)
        for slow, quick in zip(eager_grads, compiled_grads):
            cosine = torch.nn.functional.cosine_similarity(slow.float().flatten(), quick.float().flatten(), dim=0)
            assert cosine > 0.99


def test_a_compiler_that_fails_leaves_the_eager_layers(compile_setting, monkeypatch):
    """A compiler failure at first use (no C++ compiler, say) warns once and runs the eager layers: the same loss
    as with compiling off, and the record's state says why."""
    backbone = load_backbone("tiny-llama", dtype="bf16")
    method = build_method({"method": "simple"}, backbone, seed=0)
    batch = backbone.encode(INPUTS, TARGETS, max_input_tokens=16, max_target_tokens=4)
    compile_setting("0")
    eager_loss, _ = loss_and_grads(backbone, batch, method, use_fast=True)

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nsecond line")

    compile_setting("auto")
    fast._compiled_layer, fast._compile_failure = None, None
    monkeypatch.setattr(torch, "compile", lambda function, **kwargs: broken)
    with pytest.warns(RuntimeWarning, match="compiling the decoder layers failed, running them eager"):
        loss, _ = loss_and_grads(backbone, batch, method, use_fast=True)
    assert torch.equal(loss, eager_loss)
    assert fast.layers_state(torch.bfloat16, torch.device("cpu")) == \
        "eager (compiling failed: RuntimeError: no C++ compiler found)"
    assert not fast.compiles(torch.bfloat16, torch.device("cpu"))


def test_an_error_of_the_layer_itself_is_raised_not_taken_for_a_compiler_failure(compile_setting, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("compiled call failed")

    def bad_layer(*args):
        raise ValueError("shapes do not fit")

    compile_setting("auto")
    fast._compiled_layer, fast._compile_failure = None, None
    monkeypatch.setattr(torch, "compile", lambda function, **kwargs: broken)
    monkeypatch.setattr(fast, "decoder_layer", bad_layer)
    with pytest.raises(ValueError, match="shapes do not fit"):
        fast._run_layer(True, "layer", "x")
    assert fast._compile_failure is None


def test_the_fast_first_generation_step_is_taken_only_in_bf16_or_fp16_on_a_cpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert fast.prefills(torch.bfloat16, cpu) and fast.prefills(torch.float16, cpu)
    assert not fast.prefills(torch.float32, cpu) and not fast.prefills(torch.bfloat16, cuda)


def hugging_face_cache(backbone, batch, method):
    """Hugging Face's first step over the left-packed ``[prompt, input]`` rows: ``(logits [B, V], mask [B, W],
    [(keys, values) [B, Hkv, W, hd] per layer])``."""
    from superpos.backbones.batch import _pack, _positions
    from superpos.backbones.generation import _CACHE

    prompt, embeds, prompt_mask, _ = prompted_inputs(backbone, batch, method)
    embeds, mask = with_prompt(prompt, embeds, batch.attention_mask, prompt_mask)
    mask, embeds = _pack(mask, embeds, left=True)
    out = backbone.model.base_model(inputs_embeds=embeds, attention_mask=mask, position_ids=_positions(mask),
                                    use_cache=True)
    cache = getattr(out, _CACHE)
    layers = [(layer.keys, layer.values) for layer in cache.layers]
    return backbone._lm_head(out.last_hidden_state[:, -1]).float(), mask, layers


@pytest.mark.parametrize("kind", ["simple", "superpos", "per-example", "none", "packed", "packed-per-example",
                                  "dropout-on"])
def test_the_fast_first_generation_step_is_hugging_faces(llama, kind, monkeypatch):
    """fp32: the fast path's first step gives Hugging Face's next-token logits and, at every real position, its
    rotated keys and values (zeros at padding, which the mask hides), so greedy decoding continues to the same
    tokens; for one prompt, an input-dependent one, none, a packed group of runs with prompts of two lengths, and
    a run with dropout on (generation runs in eval mode, where it does not act)."""
    from superpos.backbones import MethodRows

    inputs = INPUTS
    method = None
    if kind == "dropout-on":
        llama = load_backbone("tiny-llama", dropout=True, dropout_rate=0.1)
        assert llama._hooks and not fast.supported(llama.model, training=True)
    if kind in ("simple", "superpos", "per-example", "dropout-on"):
        method = build_method({"method": "superpos" if kind == "superpos" else "simple"}, llama, seed=0)
        if kind == "per-example":
            method = PerExample(method)
    elif kind.startswith("packed"):
        members = [build_method({"method": "simple", "n_prompts": 3}, llama, seed=1),
                   build_method({"method": "superpos"}, llama, seed=2)]
        if kind == "packed-per-example":
            members[1] = PerExample(members[1])
        method, inputs = MethodRows(members, [4, 4]), INPUTS + INPUTS[::-1]
    batch = llama.encode(inputs, None, max_input_tokens=16, max_target_tokens=4)
    assert (batch.attention_mask == 0).any()
    expected_logits, mask, expected_cache = hugging_face_cache(llama, batch, method)
    prompt, embeds, prompt_mask, blocks = prompted_inputs(llama, batch, method)
    logits, cache = fast.causal_prefill(llama, prompt, embeds, batch.attention_mask, prompt_mask, blocks)
    assert torch.allclose(logits, expected_logits, rtol=1e-4, atol=1e-4)
    assert len(cache) == len(expected_cache)
    real = mask.bool()[:, None, :, None]                                  # [B, 1, W, 1]
    for (keys, values), (hf_keys, hf_values) in zip(cache, expected_cache):
        assert keys.shape == hf_keys.shape and values.shape == hf_values.shape
        for ours, theirs in ((keys, hf_keys), (values, hf_values)):
            assert torch.allclose(ours * real, theirs * real, rtol=1e-4, atol=1e-5)
            assert not (ours * ~real).any()

    calls = []
    original = fast.causal_prefill
    monkeypatch.setattr(fast, "causal_prefill", lambda *args: calls.append(1) or original(*args))
    llama.fast_prefill = False
    expected_ids = llama.generate_ids(batch, method, 4)
    monkeypatch.setattr(fast, "prefills", lambda dtype, device: True)
    llama.fast_prefill = True
    assert not calls and llama.generate_ids(batch, method, 4) == expected_ids and calls == [1]


def test_generation_in_bf16_on_a_cpu_starts_with_the_fast_path(monkeypatch):
    """bf16 on a CPU: the fast first step is taken, and its logits agree with Hugging Face's bf16 forward to bf16
    rounding (records name it: tests/test_packing.py)."""
    backbone = load_backbone("tiny-llama", dtype="bf16")
    method = build_method({"method": "simple"}, backbone, seed=0)
    batch = backbone.encode(INPUTS, None, max_input_tokens=16, max_target_tokens=4)
    calls = []
    original = fast.causal_prefill
    monkeypatch.setattr(fast, "causal_prefill", lambda *args: calls.append(1) or original(*args))
    quick = backbone.next_token_logits(batch, method)
    backbone.fast_prefill = False
    slow = backbone.next_token_logits(batch, method)
    assert calls == [1]
    assert torch.nn.functional.cosine_similarity(quick.flatten(), slow.flatten(), dim=0) > 0.999
    assert (quick - slow).abs().max() <= 0.05 * slow.abs().max()
