"""Greedy predictions of an exported adapter with plain transformers + peft, in a process that never imports
superpos (``tests/test_peft_export.py`` runs it as a script, in the adapter's parent folder).

Usage: ``python peft_plain_predict.py ADAPTER_FOLDER REQUEST.json``; the request holds ``texts`` (model inputs, as
the model card's template builds them), ``max_new_tokens`` and ``card_code`` (the card's example, run as it is).
Prints one line ``RESULT {"predictions": [...], "card_output": "..."}``.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path


def main(adapter: str, request_path: str) -> None:
    from peft import AutoPeftModelForCausalLM, AutoPeftModelForSeq2SeqLM
    from transformers import AutoTokenizer

    request = json.loads(Path(request_path).read_text())
    config = json.loads((Path(adapter) / "adapter_config.json").read_text())
    causal = config["task_type"] == "CAUSAL_LM"
    auto = AutoPeftModelForCausalLM if causal else AutoPeftModelForSeq2SeqLM
    model = auto.from_pretrained(adapter).eval()  # the base model from base_model_name_or_path
    tok = AutoTokenizer.from_pretrained(config["base_model_name_or_path"])
    predictions = []
    for text in request["texts"]:
        ids = tok(text, return_tensors="pt")
        out = model.generate(**ids, max_new_tokens=request["max_new_tokens"], do_sample=False)[0]
        new = out[ids.input_ids.shape[1]:] if causal else out  # causal outputs repeat the input first
        predictions.append(tok.decode(new, skip_special_tokens=True).strip())
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(request["card_code"], {})  # noqa: S102 - the card's own five lines, as a reader would run them
    assert "superpos" not in sys.modules, "superpos was imported"
    print("RESULT " + json.dumps({"predictions": predictions, "card_output": printed.getvalue().strip()}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
