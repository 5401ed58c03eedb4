"""A faster, exact training loss and first generation step for Llama-style causal backbones (SmolLM2, tiny-llama).

``Backbone.loss`` runs Hugging Face's ``LlamaModel`` over a padded ``[B, n + L + T]`` batch. For prompt
tuning most of that work is avoidable, and this module avoids it without changing the result (the loss and
the prompt gradients agree with the Hugging Face path to float32 rounding; ``tests/test_fast_path.py``):

1. **No padding in the linear layers.** The real tokens of the batch are packed into one ``[N, d]`` matrix
   for every projection, MLP and norm; only attention scatters them back into a padded ``[B, H, S, hd]``
   layout. Because padding sits at the end of each row, a plain causal mask is exact there (a real token
   never sees a pad), so no padding mask is built.
2. **The prompt computed once per batch.** With an input-independent prompt (every method but ATTEMPT),
   the ``n`` prompt positions are the same in every row of the batch (causal attention: they see only each
   other), so their hidden states are computed once, not ``B`` times; the other rows attend to that one
   copy. Gradients from all rows flow into it. A packed group's runs (``PromptBlock``) each have theirs
   computed once, of its own length; an input-dependent prompt goes into each of its rows.
3. **The last layer only where the LM head reads.** After the last layer's attention, the output
   projection, MLP and final norm run only at the positions that predict a target token; the LM head
   (``V x d``, the largest matrix of a small model) runs only there too.
4. **No weight gradients** anywhere (the backbone is frozen, ``requires_grad=False``), as in the
   Hugging Face path.
5. **Attention in float32 in bf16 on a CPU** (:func:`attention`): PyTorch's fused CPU attention kernel is
   slow in bf16, its backward above all (a quarter of a SmolLM2 step in a profile); the same kernel on the
   inputs widened to float32 is faster and at least as accurate. Everywhere else (fp32, CUDA) nothing changes,
   so fp32 runs stay bit for bit what they were.
6. **Compiled decoder layers in bf16 on a CPU** (:func:`compiles`): there a step is ~3,000 separate kernels,
   most of them small elementwise ones (RMSNorm's casts and powers, rotary embeddings, SiLU, residual adds, the
   padding around attention), each an OpenMP parallel region whose threads must be woken; ``torch.compile``
   (Inductor) fuses each run of them into one kernel, forward and backward (docs/SPEED.md section 1). The
   layers compute the same function; only bf16 rounding moves. fp32 and CUDA run the eager layers.

Used by ``Backbone.loss`` when :func:`supported` says yes: a Llama architecture and no dropout acting in
the frozen network (dropout hooks live on modules this path does not call). Greedy generation starts with it too
in bf16/fp16 on a CPU (:func:`causal_prefill`, :func:`prefills`): the first step, over the whole ``[prompt, input]``
batch, is the compute-bound one there, and points 1-3 halve it; its keys and values then fill Hugging Face's KV
cache for the later one-token steps (``benchmarks/bench_generation.py``).
"""
from __future__ import annotations

import dataclasses
import os
import warnings

import torch
import torch.nn.functional as F

from .batch import IGNORE_INDEX, PromptBlock, same_rows, to_device
from .dropout import is_sublayer_dropout



def supported(model, *, training: bool | None = None) -> bool:
    """True for Hugging Face Llama models (exact module types) whose dropout is not acting: in eval mode, or in
    train mode with dropout off. ``training``: judge for that mode instead of the model's current one."""
    try:
        from transformers.models.llama.modeling_llama import (LlamaAttention, LlamaDecoderLayer, LlamaMLP,
                                                              LlamaModel, LlamaRMSNorm)
    except ImportError:  # pragma: no cover - transformers without Llama
        return False
    training = model.training if training is None else training
    inner = getattr(model, "model", None)
    if type(inner) is not LlamaModel or not len(inner.layers) or getattr(inner, "rotary_emb", None) is None:
        return False
    for layer in inner.layers:
        if not (type(layer) is LlamaDecoderLayer and type(layer.self_attn) is LlamaAttention
                and type(layer.mlp) is LlamaMLP and type(layer.input_layernorm) is LlamaRMSNorm
                and type(layer.post_attention_layernorm) is LlamaRMSNorm):
            return False
        if training and layer.self_attn.attention_dropout:
            return False
        if any(_hooked(module, training) for module in (layer, layer.self_attn, layer.mlp)):
            return False  # dropout hooks acting (Backbone.set_dropout) or someone else's: take the standard path
    return not (_hooked(model, training) or _hooked(inner, training))


def _hooked(module, training: bool) -> bool:
    """Forward (pre-)hooks on a module this path would skip calling; the dropout switch's own sublayer dropout
    only in train mode, the only mode it acts in."""
    hooks = [hook for hook in module._forward_hooks.values() if training or not is_sublayer_dropout(hook)]
    return bool(hooks or module._forward_pre_hooks)


def _signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """``sin [N, hd]`` with its first half negated: Llama's ``rotate_half(x) * sin`` is ``roll(x) * signed_sin``."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of ``x [N, H, hd]`` with per-token ``cos, signed_sin [N, hd]`` (Llama's convention).

    ``rotate_half(x) = cat(-x2, x1)`` equals ``roll(x, hd/2) = cat(x2, x1)`` times the signs, and negating is
    exact, so this is bit for bit Llama's ``x * cos + rotate_half(x) * sin``: one roll (and one in the backward)
    where slicing, negating and concatenating take five kernels, ten in the backward, per call.
    """
    return x * cos[:, None, :] + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin[:, None, :]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, mask: torch.Tensor | None = None,
              causal: bool = False, scale: float) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` of ``q [B, H, Sq, hd]`` and ``k, v [B, Hkv, Sk, hd]`` (H a multiple of
    Hkv: query head i reads key/value head i // (H / Hkv)), with an additive ``mask`` broadcastable to
    ``[B, H, Sq, Sk]`` or ``causal``; returns ``[B, H, Sq, hd]`` in q's type.

    In bf16/fp16 on a CPU the inputs are widened to float32 first (exactly) and the output rounded back: the
    CPU's fused float32 kernel is faster than its bf16 one, its backward above all (docs/SPEED.md section 1),
    and it keeps scores, weights and their gradients in float32, as the bf16 kernel does not everywhere."""
    gqa = q.shape[1] != k.shape[1]
    if q.device.type != "cpu" or q.dtype in (torch.float32, torch.float64):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale, enable_gqa=gqa)
    wide = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal, scale=scale,
                                          attn_mask=None if mask is None else mask.float(), enable_gqa=gqa)
    return wide.to(q.dtype)


def decoder_layer(layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, allowed: torch.Tensor | None,
                  rows: torch.Tensor, head_rows: torch.Tensor | None, sizes: tuple[int, int, int, int, int],
                  one_prefix: bool, inline: torch.Tensor | None, which: torch.Tensor | None,
                  keys_values: list | None = None) -> torch.Tensor:
    """One Llama decoder layer over the packed rows ``x [N, d]`` of :func:`causal_target_logits`; returns ``[N, d]``,
    or ``[len(head_rows), d]`` when ``head_rows`` names the only rows read afterwards.

    ``cos, sin [N, hd]`` (``sin`` signed, :func:`_signed_sin`); ``sizes = (B, S, Q, R, P)``: batch rows, suffix
    length, shared-prompt rows ``Q = R * P`` at the top of ``x`` (``R`` prompts of ``P`` positions); ``rows [N - Q]``
    the flat ``[B * S]`` index of each suffix row; ``allowed`` the additive ``[S, P + S]`` or ``[B, 1, S, P + S]``
    mask when ``Q``; ``one_prefix``: every batch row shares the one prompt, else ``inline [B]`` (the row carries its
    prompt itself) and ``which [B]`` (its shared prompt) place the prompts. ``keys_values``: a list the layer appends
    its rotated keys and its values ``([N, Hkv, hd], [N, Hkv, hd])`` to, for a KV cache (eager calls only).
    """
    B, S, Q, R, P = sizes
    attn = layer.self_attn
    N, hd = x.shape[0], attn.head_dim
    heads, kv_heads = attn.config.num_attention_heads, attn.config.num_key_value_heads

    def padded(suffix_rows: torch.Tensor, shared_rows: torch.Tensor | None = None) -> torch.Tensor:
        """``[N_s, h, hd]`` suffix rows -> ``[B, h, S, hd]``, each row's suffix scattered into place; with the shared
        prompts' ``[Q, h, hd]`` rows, ``[B, h, P + S, hd]``: each row's shared prompt first."""
        h = suffix_rows.shape[1]
        out = suffix_rows.new_zeros(B * S, h, hd).index_copy(0, rows, suffix_rows).view(B, S, h, hd)
        if shared_rows is not None:
            shared = shared_rows.view(R, P, h, hd)
            if one_prefix:
                shared = shared.expand(B, -1, -1, -1)
            else:  # zeros, not another run's prompt, in rows without one: no gradient may cross between runs
                shared = torch.where(inline[:, None, None, None], 0.0, shared.index_select(0, which))
            out = torch.cat([shared, out], dim=1)
        return out.transpose(1, 2)

    def per_prompt(shared_rows: torch.Tensor) -> torch.Tensor:
        """The shared prompts' rows ``[Q, h, hd] -> [R, h, P, hd]``."""
        return shared_rows.view(R, P, shared_rows.shape[1], hd).transpose(1, 2)

    h = layer.input_layernorm(x)
    q = _rope(attn.q_proj(h).view(N, heads, hd), cos, sin)
    k = _rope(attn.k_proj(h).view(N, kv_heads, hd), cos, sin)
    v = attn.v_proj(h).view(N, kv_heads, hd)
    if keys_values is not None:
        keys_values.append((k, v))
    if Q:  # one split per tensor (its backward is one cat), not a slice per use (a zero fill and a copy each)
        (q_shared, q_suffix), (k_shared, k_suffix), (v_shared, v_suffix) = (t.split([Q, N - Q]) for t in (q, k, v))
        out = attention(padded(q_suffix), padded(k_suffix, k_shared), padded(v_suffix, v_shared), mask=allowed,
                        scale=attn.scaling)
        out = out.transpose(1, 2).reshape(B * S, heads * hd).index_select(0, rows)
        # Each shared prompt sees itself only (real vectors first: a causal mask keeps padding out of them).
        own = attention(per_prompt(q_shared), per_prompt(k_shared), per_prompt(v_shared), causal=True,
                        scale=attn.scaling)
        out = torch.cat([own.transpose(1, 2).reshape(Q, heads * hd), out], dim=0)
    else:
        out = attention(padded(q), padded(k), padded(v), causal=True, scale=attn.scaling)
        out = out.transpose(1, 2).reshape(B * S, heads * hd).index_select(0, rows)
    if head_rows is not None:
        x, out = x.index_select(0, head_rows), out.index_select(0, head_rows)
    x = x + attn.o_proj(out)
    return x + layer.mlp(layer.post_attention_layernorm(x))


#: ``SUPERPOS_COMPILE``: ``auto`` (or unset) compiles the fast path's decoder layers in bf16/fp16 on a CPU, ``0``
#: never does, ``1`` does wherever the fast path runs (CUDA and fp32 included: unmeasured there).
COMPILE_VARIABLE = "SUPERPOS_COMPILE"
_compiled_layer = None          # torch.compile(decoder_layer), built at first use
_compile_failure: str | None = None  # why compiling failed in this process (then every layer runs eager)


def compiles(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the fast path runs :func:`decoder_layer` compiled for a backbone of ``dtype`` on ``device``."""
    setting = os.environ.get(COMPILE_VARIABLE, "auto").strip().lower() or "auto"
    if setting not in ("auto", "0", "1"):
        raise ValueError(f"{COMPILE_VARIABLE}: must be auto, 0 or 1, got {setting!r}")
    if _compile_failure is not None or setting == "0":
        return False
    return setting == "1" or (device.type == "cpu" and dtype in (torch.bfloat16, torch.float16))


def layers_state(dtype: torch.dtype, device: torch.device) -> str:
    """What a record says about the decoder layers of the fast path: ``compiled``, ``eager`` or why not compiled."""
    if _compile_failure is not None:
        return f"eager (compiling failed: {_compile_failure})"
    return "compiled" if compiles(dtype, device) else "eager"


def _run_layer(compiled: bool, *args) -> torch.Tensor:
    """:func:`decoder_layer` compiled or eager. When the compiled call fails and the eager one does not (a missing
    C++ compiler, an Inductor bug), compiling is turned off for the process with one warning; an error of the
    layer itself is raised by the eager call."""
    global _compiled_layer, _compile_failure
    if not compiled:
        return decoder_layer(*args)
    if _compiled_layer is None:
        # dynamic: batch size, lengths and token counts change every step; one graph serves them all.
        _compiled_layer = torch.compile(decoder_layer, dynamic=True)
    try:
        return _compiled_layer(*args)
    except Exception as error:  # noqa: BLE001 - retried eager below; the layer is a pure function of its inputs
        result = decoder_layer(*args)
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        _compile_failure = f"{type(error).__name__}: {first_line}"
        warnings.warn(f"superpos: compiling the decoder layers failed, running them eager ({_compile_failure}); "
                      f"set {COMPILE_VARIABLE}=0 to skip the attempt", RuntimeWarning, stacklevel=2)
        return result


def causal_loss(backbone, prompt: torch.Tensor, embeds: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor, prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over target tokens of ``[prompt, input, target]``, as ``Backbone.loss`` defines it.

    ``prompt [B, n, d]`` and ``embeds [B, L, d]`` come from the method (model dtype); ``attention_mask [B, L]``
    marks real input tokens; ``labels [B, T]`` holds target ids, ``-100`` at padding.
    """
    logits, targets, _ = causal_target_logits(backbone, prompt, embeds, attention_mask, labels, prompt_mask)
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX)


def shared_prompts(prompt: torch.Tensor, blocks: list[PromptBlock] | None):
    """The prompts computed once per block of rows: those of blocks whose rows all hold the same prompt.

    ``blocks``: the batch's rows by method (None: one block, its sharing read by :func:`same_rows`). Returns
    ``(prefix [R, P, d] or None, lengths [B], which [B], inline [B], any_inline)``: the ``R`` shared prompts, real
    vectors first, padded to the longest ``P``; the length of each row's shared prompt (0 when it has none); the
    index of that prompt in ``prefix``; whether a row carries its prompt itself (ATTEMPT's input-dependent one);
    whether any row does (a Python bool, known without reading the device).
    """
    B, n, _ = prompt.shape
    blocks = blocks or [PromptBlock(B, n, same_rows(prompt))]
    lengths, which, inline, parts, start = [], [], [], [], 0
    for block in blocks:
        if n > 0 and block.shared:
            parts.append(prompt[start, n - block.length:])   # left-padded: the real vectors are the last ones
            lengths += [block.length] * block.rows
            which += [len(parts) - 1] * block.rows
            inline += [0] * block.rows
        else:
            lengths += [0] * block.rows
            which += [0] * block.rows
            inline += [int(n > 0)] * block.rows
        start += block.rows
    if start != B:
        raise ValueError(f"shared_prompts: blocks of {start} rows for a batch of {B}")
    lengths, which, inline = to_device([lengths, which, inline], prompt.device)     # one copy: [3, B]
    any_inline = n > 0 and not all(block.shared for block in blocks)
    if not parts:
        return None, lengths, which, inline.bool(), any_inline
    P = max(part.shape[0] for part in parts)
    prefix = torch.stack([part if part.shape[0] == P else F.pad(part, (0, 0, 0, P - part.shape[0])) for part in parts])
    return prefix, lengths, which, inline.bool(), any_inline


@dataclasses.dataclass
class PackedRows:
    """The real tokens of a batch as one ``[Q + N_s, d]`` matrix, and where each one sits (see the module doc).

    ``x``: the ``Q = R * P`` shared-prompt rows (``R`` prompts padded to ``P``), then the ``N_s`` real suffix tokens;
    ``order [B, S]``: the permutation that moved each row's real suffix tokens to its front; ``mask [B, S]`` after it;
    ``rows [N_s]``: the flat ``[B * S]`` index of each suffix row; ``lengths, which, inline [B]``, ``any_inline``: as
    :func:`shared_prompts` returns them; ``cos, sin [Q + N_s, hd]``: rotary tables (``sin`` signed); ``allowed``:
    the suffix rows' additive attention mask (None without shared prompts).
    """

    x: torch.Tensor
    order: torch.Tensor
    mask: torch.Tensor
    rows: torch.Tensor
    lengths: torch.Tensor
    which: torch.Tensor
    inline: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor
    allowed: torch.Tensor | None
    sizes: tuple[int, int, int, int, int]   # (B, S, Q, R, P)
    any_inline: bool                        # some row carries its prompt itself (``inline.any()``, known on the host)

    @property
    def shared(self) -> tuple:
        """``(one_prefix, inline, which)`` arguments of :func:`decoder_layer`."""
        return (True, None, None) if self.one_prefix else (False, self.inline, self.which)

    @property
    def one_prefix(self) -> bool:
        """Every row shares the one prompt (an unpacked run with an input-independent prompt)."""
        return self.sizes[3] == 1 and not self.any_inline


def pack_rows(backbone, prompt: torch.Tensor, suffix: torch.Tensor, mask: torch.Tensor,
              prompt_mask: torch.Tensor | None, blocks: list[PromptBlock] | None) -> PackedRows:
    """Pack ``[prompt, suffix]`` rows: ``prompt [B, n, d]`` (``prompt_mask [B, n]``, ``blocks`` as in
    :func:`causal_target_logits`) before ``suffix [B, S0, d]`` whose real positions ``mask [B, S0]`` marks. An
    input-dependent prompt joins its rows' suffixes (then ``S = n + S0``), a shared one is computed once."""
    inner = backbone.model.model
    B, n, d = prompt.shape
    device = suffix.device
    prefix, lengths, which, inline, any_inline = shared_prompts(prompt, blocks)
    if any_inline:  # an input-dependent prompt (ATTEMPT) is part of its rows
        suffix = torch.cat([prompt, suffix], dim=1)
        own = mask.new_ones(B, n) if prompt_mask is None else prompt_mask.bool()
        mask = torch.cat([own & inline[:, None], mask], dim=1)
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    mask = mask.gather(1, order)
    suffix = suffix.gather(1, order[..., None].expand(-1, -1, d))
    R, P = prefix.shape[:2] if prefix is not None else (0, 0)       # shared prompts, the longest one's length
    Q, S = R * P, suffix.shape[1]                                    # prefix rows of x; suffix length

    rows = mask.flatten().nonzero().squeeze(1)                      # [N_s] flat indices of real suffix tokens
    x = suffix.flatten(0, 1).index_select(0, rows)                   # [N_s, d]
    positions = (lengths[:, None] + mask.long().cumsum(1) - 1).flatten().index_select(0, rows)
    if Q:
        x = torch.cat([prefix.flatten(0, 1), x], dim=0)             # [Q + N_s, d]
        positions = torch.cat([torch.arange(P, device=device).repeat(R), positions])
    cos, sin = inner.rotary_emb(x[None], positions[None])

    packed = PackedRows(x, order, mask, rows, lengths, which, inline, cos[0], _signed_sin(sin[0]), None,
                        (B, S, Q, R, P), any_inline)
    if Q:  # suffix query i sees its row's shared prompt and suffix keys 0..i
        allowed = torch.ones(S, P + S, dtype=torch.bool, device=device).tril(diagonal=P)
        if not packed.one_prefix:
            sees = torch.arange(P, device=device)[None, :] < lengths[:, None]          # [B, P]
            allowed = torch.cat([sees[:, None, :].expand(B, S, P), allowed[:, P:].expand(B, S, S)], dim=2)[:, None]
        # Additive, once (attention would build it from the boolean mask in every layer); in float32 on a CPU,
        # where attention computes in float32 (exact: the values are 0 and -inf).
        packed.allowed = torch.where(allowed, 0.0, float("-inf")).to(torch.float32 if device.type == "cpu"
                                                                      else x.dtype)
    return packed


def run_layers(backbone, packed: PackedRows, head_rows: torch.Tensor, *, compiled: bool,
               keys_values: list | None = None) -> torch.Tensor:
    """The decoder layers over ``packed.x``; returns the final-normed hidden states ``[len(head_rows), d]`` of the
    rows ``head_rows`` (indices into ``packed.x``), the only ones the last layer computes past attention.
    ``keys_values``: a list each layer appends its rotated keys and values to (:func:`decoder_layer`)."""
    inner = backbone.model.model
    last = len(inner.layers) - 1
    x = packed.x
    for index, layer in enumerate(inner.layers):
        # Nothing after the last layer reads positions other than the LM head's: it keeps only those, in its own
        # eager call (a second compiled graph would cost a compilation for one layer in thirty).
        x = _run_layer(compiled and index != last, layer, x, packed.cos, packed.sin, packed.allowed, packed.rows,
                       head_rows if index == last else None, packed.sizes, *packed.shared, keys_values)
    return inner.norm(x)


def causal_target_logits(backbone, prompt: torch.Tensor, embeds: torch.Tensor, attention_mask: torch.Tensor,
                         labels: torch.Tensor, prompt_mask: torch.Tensor | None = None,
                         blocks: list[PromptBlock] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logits [N, V], targets [N], rows [N])`` at the ``N`` target tokens, with the batch row of each.

    Arguments as in :func:`causal_loss`; ``prompt_mask [B, n]`` (1 = a prompt vector) marks the prompt positions
    a row really has (runs of a packed group have prompts of several lengths); None means all of them. ``blocks``:
    the rows of each method of a packed group (``MethodRows.blocks``); each block's prompt is computed once when it
    is the same in all its rows. None: one block (:func:`shared_prompts`).
    """
    B, n, _ = prompt.shape
    # One suffix per row: [input, target], real tokens moved to the front (padding at the end).
    target_mask = labels != IGNORE_INDEX
    suffix = torch.cat([embeds, backbone.embed(labels.clamp(min=0)).to(embeds.dtype)], dim=1)
    mask = torch.cat([attention_mask.bool(), target_mask], dim=1)
    packed = pack_rows(backbone, prompt, suffix, mask, prompt_mask, blocks)
    S, Q = packed.sizes[1:3]                                          # suffix length, shared-prompt rows
    seq_labels = torch.cat([torch.full_like(attention_mask, IGNORE_INDEX, dtype=labels.dtype), labels], dim=1)
    if packed.any_inline:  # an input-dependent prompt went before the suffix: it predicts nothing
        seq_labels = torch.cat([seq_labels.new_full((B, n), IGNORE_INDEX), seq_labels], dim=1)
    seq_labels = seq_labels.gather(1, packed.order)
    # Position t is read by the LM head when token t + 1 is a target (never the last real token).
    next_labels = torch.cat([seq_labels[:, 1:], seq_labels.new_full((B, 1), IGNORE_INDEX)], dim=1)
    next_labels = next_labels.flatten().index_select(0, packed.rows)
    head_rows = (next_labels != IGNORE_INDEX).nonzero().squeeze(1)
    targets = next_labels.index_select(0, head_rows)
    head_batch_rows = packed.rows.index_select(0, head_rows) // S  # the batch row of each target
    hidden = run_layers(backbone, packed, head_rows + Q, compiled=compiles(packed.x.dtype, packed.x.device))
    return backbone._lm_head(hidden), targets, head_batch_rows       # [targets, V]


def prefills(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether greedy generation starts with :func:`causal_prefill` for a backbone of ``dtype`` on ``device``: in
    bf16/fp16 on a CPU, where the first step is compute-bound and half of it is padding and repeated prompts.
    Elsewhere Hugging Face's forward runs it, so fp32 and CUDA generations stay what they were."""
    return device.type == "cpu" and dtype in (torch.bfloat16, torch.float16)


@torch.no_grad()
def causal_prefill(backbone, prompt: torch.Tensor, embeds: torch.Tensor, attention_mask: torch.Tensor,
                   prompt_mask: torch.Tensor | None = None, blocks: list[PromptBlock] | None = None
                   ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]] | None:
    """Greedy generation's first step over ``[prompt, input]``, as Hugging Face's forward computes it, with the
    padding, the repeated shared prompts and the last layer's unread positions left out.

    Arguments as in :func:`causal_target_logits` (no labels). Returns ``(logits [B, V], cache)``: the next-token
    logits at each row's last real token, and per layer the rotated keys and the values ``[B, Hkv, n + L, hd]``
    laid out as ``generation.causal_steps`` lays out its inputs (each row's real ``[prompt, input]`` tokens at the
    end, zeros before them), ready to continue decoding with the Hugging Face KV cache. None when a row has no
    input token (Hugging Face's path then runs the step).
    """
    B, n, _ = prompt.shape
    L = embeds.shape[1]
    packed = pack_rows(backbone, prompt, embeds, attention_mask.bool(), prompt_mask, blocks)
    Q, P = packed.sizes[2], packed.sizes[4]                           # shared-prompt rows, longest shared prompt
    counts = packed.mask.sum(1)                                       # [B] real suffix tokens of each row
    if not bool((counts > 0).all()):
        return None
    ends = counts.cumsum(0)                      # suffix rows are row-major: row b's last is ends[b] - 1
    keys_values: list = []
    hidden = run_layers(backbone, packed, ends - 1 + Q, compiled=False, keys_values=keys_values)
    logits = backbone._lm_head(hidden).float()                        # [B, V]

    # Slot t of row b holds its j-th real token, j = t - (width - length_b): a shared-prompt row while j < lengths[b],
    # then its suffix rows; earlier slots are padding (the zero row appended below).
    width = n + L
    lengths = packed.lengths
    j = torch.arange(width, device=embeds.device)[None, :] - (width - lengths - counts)[:, None]     # [B, width]
    shared_source = packed.which[:, None] * P + j
    suffix_source = Q + (ends - counts)[:, None] + (j - lengths[:, None])
    zero_row = Q + packed.rows.shape[0]
    source = torch.where(j < 0, zero_row, torch.where(j < lengths[:, None], shared_source, suffix_source)).flatten()
    cache = []
    for keys, values in keys_values:                                  # [Q + N_s, Hkv, hd] each
        laid = [torch.cat([t, t.new_zeros(1, *t.shape[1:])]).index_select(0, source).view(B, width, *t.shape[1:])
                .transpose(1, 2) for t in (keys, values)]
        cache.append((laid[0], laid[1]))
    return logits, cache
