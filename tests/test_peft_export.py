"""PEFT interop: a fixed prompt exported by superpos loads with ``PeftModel.from_pretrained`` and gives the
same logits and loss as superpos' own backbone path, on the tiny seq2seq and causal backbones."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from superpos.methods import build_method, export_peft_adapter, read_peft_prompt

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
