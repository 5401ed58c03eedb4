"""Prompt methods: shapes, the paper's formulas on tiny numbers, configs, save/load, training on tiny backbones.

The math tests run on ``FakeBackbone`` (a random embedding table and the few attributes a method
needs); the integration tests train on the real tiny backbones from ``superpos.backbones``.
"""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from superpos.methods import (
    METHODS, AttemptConfig, AttemptPrompt, EptConfig, FullConfig, PromptMethod, ResidualConfig, SimpleConfig,
    SuperPosConfig, SuperPosPrompt, build_method, load_method, method_config,
)


class FakeBackbone:
    """Just what a method needs: an embedding table, candidate ids, a toy tokenizer for label words."""

    kind = "causal"
    device = torch.device("cpu")

    def __init__(self, vocab: int = 64, dim: int = 8, special: int = 3, name: str = "fake", seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.name = name
        self.embedding_weight = torch.randn(vocab, dim, generator=generator)
        self.embed_dim = dim
        self.special = special  # ids below this are "special": never candidates

    def candidate_token_ids(self, top_k: int | None = None) -> torch.Tensor:
        ids = torch.arange(self.special, self.embedding_weight.shape[0])
        return ids[:top_k] if top_k is not None else ids

    def token_ids(self, text: str) -> list[int]:
        # one token per character: multi-character label words are multi-token labels
        return [self.special + (ord(c) % (self.embedding_weight.shape[0] - self.special)) for c in text]


SMALL = {  # per-method config changes that fit the fake backbone
    "simple": {}, "superpos": {"m": 16}, "residual": {"bottleneck": 8}, "attempt": {"bottleneck": 4},
    "ept": {"max_length": 12, "rank": 2}, "full": {},
}
PROMPT_METHODS = [name for name in METHODS if name != "full"]


def build(name, backbone=None, seed=0, **changes):
    backbone = backbone or FakeBackbone()
    config = {"method": name, **SMALL[name], **changes}
    n = changes.get("n_prompts", METHODS[name][0]().n_prompts)
    sources = torch.randn(2, n, backbone.embed_dim, generator=torch.Generator().manual_seed(7))
    return build_method(config, backbone, seed=seed, label_words=["yes", "no"],
                        source_prompts=sources if name == "attempt" else None)


def perturb(method: PromptMethod, seed: int = 3) -> None:
    """Move every trainable parameter off its init, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in method.trainable_parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))


def inputs(batch=3, length=7, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(batch, length, dim, generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, 5:] = 0
    return embeds, mask


# --------------------------------------------------------------------------- shapes and registry
@pytest.mark.parametrize("name", PROMPT_METHODS)
def test_forward_shapes(name):
    method = build(name)
    embeds, mask = inputs()
    prompt, out = method(embeds, mask)
    assert prompt.shape == (3, method.n_prompts, 8)
    assert out.shape == embeds.shape
    assert prompt.dtype == embeds.dtype
    if name not in ("attempt",):
        assert method.prompt_matrix().shape == (method.n_prompts, 8)
    assert method.trainable_parameter_count() == sum(p.numel() for p in method.parameters() if p.requires_grad)


def test_registry_lists_every_method():
    assert set(METHODS) == {"simple", "superpos", "residual", "attempt", "ept", "full"}
    for name, spec in METHODS.items():
        assert spec.method_class.name == name and spec.method_class.config_class is spec.config_class
        assert spec.description and spec.label and spec.colour.startswith("#")
        assert set(spec.variant_fields) <= {field.name for field in dataclasses.fields(spec.config_class)}
    assert len({spec.colour for spec in METHODS.values()}) == len(METHODS)
    assert sorted(METHODS, key=lambda name: METHODS[name].order) == ["simple", "attempt", "residual", "superpos", "ept",
                                                                      "full"]  # Table 1's order, EPT added


def test_build_method_accepts_dicts_and_configs():
    backbone = FakeBackbone()
    a = build_method(SuperPosConfig(m=16), backbone, seed=5)
    b = build_method({"method": "superpos", "m": 16}, backbone, seed=5)
    c = build_method({"m": 16}, backbone, seed=5, method="superpos")
    for other in (b, c):
        assert torch.equal(a.prompt_matrix(), other.prompt_matrix())
    with pytest.raises(ValueError, match="method"):
        build_method({"m": 16}, backbone)
    with pytest.raises(ValueError, match="unknown method"):
        build_method({"method": "lora"}, backbone)


# --------------------------------------------------------------------------- superpos formula
def test_superpos_matches_hand_computation():
    # d = 2, m = 3, n = 2: p_i = (E_freeze + dE_i) p'_i with E_freeze's columns e_1..e_3 (rows here)
    e_freeze = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    weights = torch.tensor([[1.0, 0.5, -1.0], [0.0, 2.0, 3.0]])
    delta_e = torch.zeros(2, 3, 2)
    delta_e[0, 1] = torch.tensor([0.5, -1.0])   # prompt 1 moves e_2
    delta_e[1, 2] = torch.tensor([1.0, 0.0])    # prompt 2 moves e_3
    method = SuperPosPrompt.from_tensors(e_freeze, weights, delta_e)
    # p_1 = 1*[1,0] + 0.5*([0,2]+[0.5,-1]) - 1*[1,1] = [0.25, -0.5]
    # p_2 = 0*[1,0] + 2*[0,2] + 3*([1,1]+[1,0])     = [6, 7]
    expected = torch.tensor([[0.25, -0.5], [6.0, 7.0]])
    assert torch.allclose(method.prompt_matrix(), expected)
    prompt, _ = method(torch.zeros(4, 3, 2), torch.ones(4, 3))
    assert torch.allclose(prompt, expected.expand(4, -1, -1))


def test_superpos_softmax_with_trained_embeddings_matches_hand_computation():
    # p_1 = sum_j softmax(p'_1)_j (e_j + dE_1j), softmax = [1, 2, 3] / 6, dE_12 = [0.5, -1]
    e_freeze = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    weights = torch.tensor([[0.0, math.log(2.0), math.log(3.0)]])
    delta_e = torch.zeros(1, 3, 2)
    delta_e[0, 1] = torch.tensor([0.5, -1.0])
    method = SuperPosPrompt.from_tensors(e_freeze, weights, delta_e, softmax=True)
    # (1 * [1, 0] + 2 * [0.5, 1] + 3 * [1, 1]) / 6 = [5, 5] / 6
    assert torch.allclose(method.prompt_matrix()[0], torch.tensor([5.0, 5.0]) / 6, atol=1e-6)


def test_superpos_softmax_is_an_expected_embedding():
    e_freeze = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    weights = torch.tensor([[0.0, math.log(2.0), math.log(3.0)]])  # softmax = [1, 2, 3] / 6
    method = SuperPosPrompt.from_tensors(e_freeze, weights, softmax=True)
    assert torch.allclose(method.superposition_weights().sum(-1), torch.ones(1))
    expected = (1 * e_freeze[0] + 2 * e_freeze[1] + 3 * e_freeze[2]) / 6
    assert torch.allclose(method.prompt_matrix()[0], expected, atol=1e-6)
    built = build("superpos", softmax=True)
    assert built.config.resolved_weights_init() == "zeros"
    assert torch.allclose(built.superposition_weights().sum(-1), torch.ones(built.n_prompts))
    # zeros logits: every prompt starts at the mean of the sampled embeddings
    assert torch.allclose(built.prompt_matrix(), built.e_freeze.mean(0).expand(built.n_prompts, -1), atol=1e-6)


def test_superpos_samples_unique_real_tokens_and_is_reproducible():
    backbone = FakeBackbone(vocab=64)
    method = build("superpos", backbone, m=40)
    ids = method.token_ids.tolist()
    assert len(set(ids)) == 40
    assert set(ids) <= set(backbone.candidate_token_ids().tolist())
    assert torch.equal(method.e_freeze, backbone.embedding_weight[method.token_ids])
    assert torch.equal(build("superpos", backbone, m=40).token_ids, method.token_ids)
    assert not torch.equal(build("superpos", backbone, m=40, seed=1).token_ids, method.token_ids)
    top = build("superpos", backbone, m=10, vocab_top_k=12)
    assert set(top.token_ids.tolist()) <= set(backbone.candidate_token_ids(12).tolist())


def test_superpos_one_hot_init_starts_at_real_token_embeddings():
    method = build("superpos")
    # p_i = e_{token i}: the prompt starts as a simple prompt with vocab init
    assert torch.equal(method.prompt_matrix(), method.e_freeze[: method.n_prompts])
    assert torch.count_nonzero(method.delta_e) == 0
    analysis = method.analysis_state()
    assert len(analysis["weights"]) == 10 and len(analysis["weights"][0]) == 16
    json.dumps(analysis)


def test_superpos_one_hot_cycles_over_the_tokens_when_m_is_below_n():
    # m = 4 tokens for n = 10 prompts: p'_i is the indicator of token i mod 4, so prompts 0, 4, 8 start equal
    method = build("superpos", m=4)
    expected = torch.zeros(10, 4)
    expected[torch.arange(10), torch.arange(10) % 4] = 1.0
    assert torch.equal(method.weights.detach(), expected)
    assert torch.equal(method.prompt_matrix(), method.e_freeze[torch.arange(10) % 4])
    # m >= n: exactly the identity's first n rows, as before
    assert torch.equal(build("superpos", m=16).weights.detach(), torch.eye(10, 16))


def test_superpos_m_larger_than_vocabulary_fails_naming_m():
    with pytest.raises(ValueError, match=r"^m: "):
        build("superpos", FakeBackbone(vocab=20), m=100)


def test_superpos_e_freeze_is_a_buffer_outside_the_optimizer():
    method = build("superpos")
    names = {name for name, p in method.named_parameters() if p.requires_grad}
    assert names == {"delta_e", "weights"}
    assert "e_freeze" in dict(method.named_buffers())
    grouped = {id(p) for group in method.param_groups() for p in group["params"]}
    assert id(method.e_freeze) not in grouped
    assert method.param_groups()[0]["weight_decay"] == 1e-5 and method.param_groups()[0]["lr"] == 0.01


# --------------------------------------------------------------------------- simple inits
def test_simple_vocab_init_rows_are_sampled_token_embeddings():
    backbone = FakeBackbone()
    method = build("simple", backbone)
    ids = method.init_token_ids
    assert len(set(ids.tolist())) == method.n_prompts
    assert torch.equal(method.prompt.detach(), backbone.embedding_weight[ids])


def test_simple_uniform_init_range():
    method = build("simple", init="uniform")
    values = method.prompt.detach()
    assert values.min() >= -0.5 and values.max() <= 0.5 and values.std() > 0.1


def test_labels_init_rows_are_averaged_label_embeddings():
    backbone = FakeBackbone()
    method = build_method({"method": "simple", "init": "labels", "n_prompts": 4}, backbone,
                          label_words=["a", "xyz"], seed=0)
    table = backbone.embedding_weight
    assert torch.allclose(method.prompt[0], table[backbone.token_ids("a")[0]])
    assert torch.allclose(method.prompt[1], table[backbone.token_ids("xyz")].mean(0))  # multi-token: the mean
    rest = method.init_token_ids[2:]
    assert (rest >= backbone.special).all()
    assert torch.equal(method.prompt.detach()[2:], table[rest])
    with pytest.raises(ValueError, match=r"^init: "):
        build_method({"method": "simple", "init": "labels"}, backbone, label_words=None)


# --------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", list(METHODS))
def test_config_json_round_trip(name, tmp_path):
    config_cls = METHODS[name][0]
    config = config_cls()
    assert config_cls.from_json(config.to_json()) == config
    config.to_json(tmp_path / "c.json")
    assert config_cls.from_json(tmp_path / "c.json") == config
    for field in dataclasses.fields(config_cls):  # help text on every field (PEFT style)
        assert field.metadata.get("help"), f"{name}.{field.name} has no help text"


@pytest.mark.parametrize("config_cls, changes, field", [
    (SimpleConfig, {"n_prompts": 0}, "n_prompts"),
    (SimpleConfig, {"init": "random"}, "init"),
    (SimpleConfig, {"lr": -0.1}, "lr"),
    (SimpleConfig, {"weight_decay": -1}, "weight_decay"),
    (SimpleConfig, {"vocab_top_k": 0}, "vocab_top_k"),
    (SuperPosConfig, {"m": 0}, "m"),
    (SuperPosConfig, {"weights_init": "xavier"}, "weights_init"),
    (SuperPosConfig, {"softmax": "yes"}, "softmax"),
    (ResidualConfig, {"bottleneck": 0}, "bottleneck"),
    (ResidualConfig, {"nonlinearity": "gelu"}, "nonlinearity"),
    (AttemptConfig, {"temperature": 0}, "temperature"),
    (AttemptConfig, {"sources": "qqp"}, "sources"),
    (EptConfig, {"rank": 0}, "rank"),
    (EptConfig, {"low_rank_lr": -1}, "low_rank_lr"),
    (FullConfig, {"n_prompts": 10}, "n_prompts"),
    (FullConfig, {"lr": -1e-5}, "lr"),
])
def test_bad_configs_raise_naming_the_field(config_cls, changes, field):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        config_cls(**changes)


def test_unknown_config_field_is_rejected():
    with pytest.raises(ValueError, match="unknown field"):
        method_config({"method": "superpos", "mm": 3})


def test_paper_defaults():
    assert (SimpleConfig().n_prompts, SimpleConfig().lr, SimpleConfig().weight_decay, SimpleConfig().init) == \
        (10, 0.01, 0.01, "vocab")
    assert (SuperPosConfig().m, SuperPosConfig().lr, SuperPosConfig().weight_decay) == (128, 0.01, 1e-5)
    assert (ResidualConfig().bottleneck, ResidualConfig().lr, ResidualConfig().weight_decay) == (128, 0.3, 0.01)
    assert (AttemptConfig().bottleneck, AttemptConfig().lr, AttemptConfig().weight_decay) == (100, 0.3, 1e-5)
    assert (FullConfig().lr, FullConfig().n_prompts) == (1e-5, 0)


# --------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("name", PROMPT_METHODS)
def test_save_load_round_trip(name, tmp_path):
    backbone = FakeBackbone()
    method = build(name, backbone)
    perturb(method)
    method.save(tmp_path / name)
    assert {p.name for p in (tmp_path / name).iterdir()} == {"config.json", "state.safetensors"}
    loaded = load_method(tmp_path / name, backbone)
    assert type(loaded) is type(method) and loaded.config == method.config
    embeds, mask = inputs()
    for a, b in zip(method(embeds, mask), loaded(embeds, mask)):
        assert torch.equal(a, b)
    for key, value in method.trainable_state().items():
        assert torch.equal(value, loaded.trainable_state()[key])


def test_load_does_not_depend_on_the_build_seed(tmp_path):
    backbone = FakeBackbone()
    method = build("superpos", backbone, seed=11)
    method.save(tmp_path)
    assert torch.equal(load_method(tmp_path, backbone).token_ids, method.token_ids)


def test_trainable_state_holds_only_trainable_parts_and_rebuild_buffers():
    assert set(build("superpos").trainable_state()) == {"e_freeze", "token_ids", "delta_e", "weights"}
    assert set(build("simple").trainable_state()) == {"prompt", "init_token_ids"}
    assert "source_prompts" in build("attempt").trainable_state()


@pytest.mark.parametrize("name", ["simple", "superpos", "residual"])
def test_export_prompt_is_the_projected_prompt(name):
    method = build(name)
    perturb(method)
    exported = method.export_prompt()
    assert exported.requires_grad is False and exported.device.type == "cpu"
    assert torch.equal(exported, method.prompt_matrix().detach())
    if name == "residual":  # the prompt after the MLP, not the raw parameter (Residual PT's release bug)
        assert not torch.allclose(exported, method.prompt.detach())


@pytest.mark.parametrize("name", ["attempt", "ept"])
def test_input_dependent_methods_refuse_export_prompt(name):
    method = build(name)
    with pytest.raises(NotImplementedError, match=name):
        method.export_prompt()


# --------------------------------------------------------------------------- residual
def test_residual_matches_hand_computation():
    """d = 2, bottleneck 1: p' = LayerNorm(W_up ReLU(W_down p)) + p, with the rows' numbers worked out by hand."""
    from superpos.methods import ResidualPrompt

    method = ResidualPrompt(ResidualConfig(n_prompts=2, bottleneck=1), embed_dim=2)
    down, _, up, norm = method.mlp
    with torch.no_grad():
        method.prompt.copy_(torch.tensor([[3.0, 1.0], [0.0, 1.0]]))
        down.weight.copy_(torch.tensor([[1.0, -1.0]])), down.bias.zero_()
        up.weight.copy_(torch.tensor([[1.0], [3.0]])), up.bias.zero_()
    # row 1: W_down p = 2, ReLU 2, W_up -> [2, 6]; LayerNorm (mean 4, std 2) -> [-1, 1]; + p -> [2, 2]
    # row 2: W_down p = -1, ReLU 0, W_up -> [0, 0]; LayerNorm of a constant -> [0, 0]; + p -> [0, 1]
    expected = torch.tensor([[2.0, 2.0], [0.0, 1.0]])
    assert torch.allclose(method.prompt_matrix(), expected, atol=1e-5)


def test_ept_pieces_match_hand_computation():
    """d = 2, s = 1, r = 1, two positions, two subspaces of rank 1: the low-rank update (α/√r) A B, the fusion
    g ⊙ softmax(P Uᵀ/√d) U, the gated projection Σ_n γ_n P D_n U_n with γ = softmax(gate(mean P)), and their sum."""
    from superpos.methods import EptPrompt

    config = EptConfig(n_prompts=1, rank=1, max_length=2, low_rank_alpha=2.0, n_spaces=2, projection_rank=1)
    method = EptPrompt(config, embed_dim=2)
    with torch.no_grad():
        method.prompt.copy_(torch.tensor([[1.0, 1.0]]))
        method.lora_a.copy_(torch.tensor([[1.0], [0.5]]))
        method.lora_b.copy_(torch.tensor([[1.0, 0.0]]))
        method.fusion_gate.copy_(torch.tensor([1.0, 0.5]))
        method.proj_down.copy_(torch.tensor([[[1.0], [0.0]], [[0.0], [1.0]]]))
        method.proj_up.copy_(torch.tensor([[[0.0, 1.0]], [[2.0, 0.0]]]))
        method.gate.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]])), method.gate.bias.zero_()
    update = torch.tensor([[2.0, 0.0], [1.0, 0.0]])                    # 2 * [[1], [0.5]] @ [[1, 0]]
    assert torch.allclose(method.input_update(), update)
    first = 1 / (1 + math.exp(-1 / math.sqrt(2)))                     # softmax of [2, 1] / sqrt(2), first entry
    fusion = torch.tensor([2 * first + 1 * (1 - first), 0.0])          # gate [1, 0.5] times [x, 0]
    assert torch.allclose(method.fusion_term()[0], fusion, atol=1e-6)
    gamma = torch.tensor([math.e, 1.0]) / (math.e + 1)                 # softmax of gate([1, 1]) = [1, 0]
    assert torch.allclose(method.space_weights(), gamma, atol=1e-6)
    projection = gamma[0] * torch.tensor([0.0, 1.0]) + gamma[1] * torch.tensor([2.0, 0.0])  # P D_n = 1 for both
    assert torch.allclose(method.projection_term()[0], projection, atol=1e-6)
    assert torch.allclose(method.prompt_matrix()[0], torch.tensor([1.0, 1.0]) + fusion + projection, atol=1e-6)


def test_residual_is_layer_norm_of_mlp_plus_skip():
    method = build("residual")
    perturb(method)
    p = method.prompt
    down, act, up, norm = method.mlp
    expected = torch.nn.functional.layer_norm(up(torch.relu(down(p))), (8,), norm.weight, norm.bias) + p
    assert torch.allclose(method.prompt_matrix(), expected)


# --------------------------------------------------------------------------- attempt
def test_attempt_attention_matches_hand_computation():
    d, n = 2, 1
    config = AttemptConfig(n_prompts=n, bottleneck=2, temperature=2.0)
    method = AttemptPrompt(config, d, n_sources=2)
    with torch.no_grad():
        method.attn_down.weight.copy_(torch.eye(2))
        method.attn_up.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        method.source_prompts.copy_(torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]))
        method.target.copy_(torch.tensor([[0.5, 0.5]]))
    # one input of two tokens plus a masked pad whose large values must be ignored
    embeds = torch.tensor([[[1.0, -2.0], [0.0, -1.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0]])
    pooled = [1.0, -1.0]                                       # max over the two real tokens
    silu = [v / (1 + math.exp(-v)) for v in pooled]
    z = [silu[0], -silu[1]]                                    # W_up = diag(1, -1)
    mean, var = sum(z) / 2, sum((v - sum(z) / 2) ** 2 for v in z) / 2
    h = [(v - mean) / math.sqrt(var + 1e-5) for v in z]        # LayerNorm (weight 1, bias 0)
    keys = [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]               # max-pooled sources, then the target
    scores = [(k[0] * h[0] + k[1] * h[1]) / 2.0 for k in keys]
    weights = [math.exp(s) / sum(math.exp(t) for t in scores) for s in scores]
    expected = [0.5 + weights[0] * 1.0 + weights[2] * 0.5, 0.5 + weights[1] * 1.0 + weights[2] * 0.5]
    assert torch.allclose(method.attention(embeds, mask), torch.tensor([weights]), atol=1e-6)
    prompt, out = method(embeds, mask)
    assert torch.allclose(prompt, torch.tensor([[expected]]), atol=1e-6)
    assert torch.equal(out, embeds)


def test_attempt_defaults_and_parameters():
    method = build("attempt")
    assert method.temperature == pytest.approx(8 * math.e)  # T = d * e
    names = {name for name, p in method.named_parameters()}
    assert names == {"target", "attn_down.weight", "attn_up.weight", "layer_norm.weight", "layer_norm.bias"}
    assert not method.source_prompts.requires_grad
    assert torch.equal(method.export_target_prompt(), method.target.detach())
    with pytest.raises(ValueError, match=r"^sources: "):
        build_method({"method": "attempt"}, FakeBackbone())
    with pytest.raises(ValueError, match=r"^source_prompts: "):
        build_method({"method": "attempt"}, FakeBackbone(), source_prompts=torch.zeros(2, 3, 8))
    embeds, mask = inputs()
    method.eval()
    method(embeds, mask)
    analysis = method.analysis_state()
    assert len(analysis["mean_attention"]) == 3 and sum(analysis["mean_attention"]) == pytest.approx(1.0)


# --------------------------------------------------------------------------- ept
def test_ept_stage_switches_change_the_parameter_set():
    base = {"prompt", "lora_a", "lora_b"}
    steps = {
        (False, False): base,
        (True, False): base | {"fusion_gate"},
        (True, True): base | {"fusion_gate", "proj_down", "proj_up", "gate.weight", "gate.bias"},
    }
    counts = []
    for (fusion, projection), names in steps.items():
        method = build("ept", fusion=fusion, projection=projection)
        assert {name for name, _ in method.named_parameters()} == names
        counts.append(method.trainable_parameter_count())
        # every stage starts from the short prompt itself (B = 0, projection up-maps = 0)
        assert torch.equal(method.prompt_matrix(), method.prompt)
    s, d, r, m, n_spaces, k = 5, 8, 2, 12, 4, 2
    assert counts[0] == s * d + m * r + r * d
    assert counts[1] == counts[0] + d
    assert counts[2] == counts[1] + 2 * n_spaces * d * k + n_spaces * d + n_spaces


def test_ept_low_rank_update_is_positional_over_real_tokens():
    method = build("ept")
    perturb(method)
    update = method.input_update().detach()
    embeds = torch.zeros(2, 6, 8)
    right = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    _, shifted = method(embeds, right)
    assert torch.allclose(shifted[0, :4], update[:4]) and torch.equal(shifted[0, 4:], torch.zeros(2, 8))
    assert torch.allclose(shifted[1], update[:6])
    _, shifted_left = method(embeds, left)
    assert torch.allclose(shifted_left[0, 2:], update[:4])  # same per-token update with left padding
    long = torch.zeros(1, 20, 8)
    _, shifted_long = method(long, torch.ones(1, 20))
    assert torch.equal(shifted_long[0, 12:], torch.zeros(8, 8))  # past max_length: no update


def test_ept_param_groups_use_the_low_rank_learning_rate():
    method = build("ept")
    groups = {g["name"]: g for g in method.param_groups()}
    assert groups["ept.low_rank"]["lr"] == 1e-4 and groups["ept.prompt"]["lr"] == 0.3
    assert {id(p) for p in groups["ept.low_rank"]["params"]} == {id(method.lora_a), id(method.lora_b)}
    assert len(groups["ept.prompt"]["params"]) + 2 == len(list(method.parameters()))


# --------------------------------------------------------------------------- parameter counts at paper shapes
@pytest.mark.parametrize("vocab, d", [(49152, 576), (32100, 768)])
def test_trainable_parameter_counts_at_paper_shapes(vocab, d):
    backbone = FakeBackbone(vocab=vocab, dim=d)
    n, m, b = 10, 128, 128
    counts = {name: build_method({"method": name}, backbone, label_words=["a"],
                                 source_prompts=torch.zeros(4, 10, d) if name == "attempt" else None
                                 ).trainable_parameter_count()
              for name in PROMPT_METHODS}
    assert counts["simple"] == n * d
    assert counts["superpos"] == n * m * d + n * m
    assert counts["residual"] == n * d + (d * b + b) + (b * d + d) + 2 * d
    assert counts["attempt"] == n * d + 2 * d * 100 + 2 * d
    assert counts["ept"] == 5 * d + 256 * 4 + 4 * d + d + 2 * 4 * d * 2 + 4 * d + 4


# --------------------------------------------------------------------------- training on the tiny backbones
TINY = {"tiny-t5": "tiny_t5", "tiny-llama": "tiny_llama"}
TEXTS = (["the film was a delight", "dull and far too long", "markets rallied on tuesday"],
         ["positive", "negative", "business"])


def tiny_backbone(request, name: str):
    """The shared conftest fixture when there is one, else a fresh ``load_backbone(name)``."""
    try:
        return request.getfixturevalue(TINY[name])
    except pytest.FixtureLookupError:
        from superpos.backbones import load_backbone

        return load_backbone(name)


def source_prompts_for(backbone, n=10, k=3):
    ids = backbone.candidate_token_ids().cpu()[: k * n].view(k, n)
    return backbone.embedding_weight.detach()[ids.to(backbone.device)].float()


def train_steps(backbone, method, steps=3):
    """AdamW steps through ``backbone.loss``; returns the gradients seen at the last step."""
    optimizer = torch.optim.AdamW(method.param_groups())
    batch = backbone.encode(*TEXTS, max_input_tokens=16, max_target_tokens=4)
    grads = {}
    for _ in range(steps):
        loss = backbone.loss(batch, method)
        assert torch.isfinite(loss)
        loss.backward()
        grads = {name: p.grad for name, p in backbone.model.named_parameters()}
        grads.update({f"method.{name}": p.grad for name, p in method.named_parameters()})
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("backbone_name", list(TINY))
@pytest.mark.parametrize("name", PROMPT_METHODS)
def test_training_moves_only_the_method(request, backbone_name, name):
    backbone = tiny_backbone(request, backbone_name)
    frozen = {k: v.detach().clone() for k, v in backbone.model.state_dict().items()}
    sources = source_prompts_for(backbone) if name == "attempt" else None
    method = build_method({"method": name}, backbone, label_words=["positive", "negative", "business"],
                          source_prompts=sources, seed=0)
    before = {k: v.detach().clone() for k, v in method.state_dict().items()}
    grads = train_steps(backbone, method)
    # the frozen backbone: bit-identical weights and no gradient at all
    for key, value in backbone.model.state_dict().items():
        assert torch.equal(value, frozen[key]), f"{backbone_name} weight {key} moved"
    assert all(g is None for k, g in grads.items() if not k.startswith("method.")), "gradient reached the backbone"
    # the method: every trainable parameter got a gradient and the prompt moved
    trainable = {f"method.{k}" for k, p in method.named_parameters() if p.requires_grad}
    assert trainable and all(grads[k] is not None for k in trainable)
    after = method.state_dict()
    moved = {k for k in after if not torch.equal(after[k], before[k])}
    if name == "superpos":
        assert torch.equal(after["e_freeze"], before["e_freeze"]) and torch.equal(after["token_ids"], before["token_ids"])
        assert {"delta_e", "weights"} <= moved
    elif name == "attempt":
        assert "source_prompts" not in moved and "target" in moved
    elif name == "ept":
        assert {"prompt", "lora_b"} <= moved
    else:
        assert "prompt" in moved


@pytest.mark.parametrize("backbone_name", list(TINY))
def test_method_dtype_follows_the_backbone(request, backbone_name):
    backbone = tiny_backbone(request, backbone_name)
    method = build_method({"method": "superpos"}, backbone)
    embeds = torch.randn(2, 5, backbone.embed_dim, dtype=torch.bfloat16)
    prompt, out = method(embeds, torch.ones(2, 5, dtype=torch.long))
    assert prompt.dtype == torch.bfloat16 and out.dtype == torch.bfloat16


def test_vocab_init_uses_real_tokenizer_ids(request):
    backbone = tiny_backbone(request, "tiny-t5")
    method = build_method({"method": "superpos"}, backbone, seed=3)
    ids = method.token_ids.cpu()
    assert len(set(ids.tolist())) == 128
    assert set(ids.tolist()) <= set(backbone.candidate_token_ids().cpu().tolist())
    assert int(ids.max()) < len(backbone.tokenizer)  # never T5's padding rows
    assert torch.equal(method.e_freeze, backbone.embedding_weight.detach()[ids.to(backbone.device)].float())


def test_labels_init_on_a_real_tokenizer(request):
    backbone = tiny_backbone(request, "tiny-llama")
    words = ["positive", "not_entailment"]
    method = build_method({"method": "simple", "init": "labels"}, backbone, label_words=words)
    table = backbone.embedding_weight.detach().float()
    for row, word in zip(method.prompt.detach(), words):
        assert torch.allclose(row, table[backbone.token_ids(word)].mean(0))


def test_full_fine_tuning_trains_every_weight(tmp_path):
    from superpos.backbones import load_backbone

    backbone = load_backbone("tiny-t5")  # its own copy: full un-freezes the model
    before = {k: v.detach().clone() for k, v in backbone.model.state_dict().items()}
    method = build_method({"method": "full", "lr": 1e-3}, backbone)
    assert method.n_prompts == 0 and method.prompt_matrix().shape == (0, backbone.embed_dim)
    assert method.trainable_parameter_count() == sum(p.numel() for p in backbone.model.parameters())
    embeds, mask = torch.randn(2, 4, backbone.embed_dim), torch.ones(2, 4)
    prompt, out = method(embeds, mask)
    assert prompt.shape == (2, 0, backbone.embed_dim) and out is embeds
    grads = train_steps(backbone, method, steps=2)
    assert grads["encoder.block.0.layer.0.SelfAttention.q.weight"] is not None
    after = backbone.model.state_dict()
    assert not torch.equal(after["encoder.block.0.layer.0.SelfAttention.q.weight"],
                           before["encoder.block.0.layer.0.SelfAttention.q.weight"])
    with pytest.raises(NotImplementedError, match="full"):
        method.export_prompt()
    method.save(tmp_path)
    fresh = load_backbone("tiny-t5")
    loaded = load_method(tmp_path, fresh)
    for key, value in fresh.model.state_dict().items():
        assert torch.equal(value, after[key])
    assert loaded.name == "full"
