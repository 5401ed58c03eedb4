"""Near misses of known names, for one-line errors: ``unknown method 'superpose' (did you mean 'superpos'?)``."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: object, known: Iterable[str], *, cutoff: float = 0.6) -> str:
    """``" (did you mean 'superpos'?)"`` naming the known name closest to ``name`` (those equally close, if
    several), or ``""`` when none is close: ``difflib``'s similarity ratio below ``cutoff``.

    Case and surrounding spaces are ignored (``SuperPos`` is near ``superpos``). The text goes right after the
    quoted name: ``f"unknown method {name!r}{did_you_mean(name, METHODS)}; known: ..."``."""
    if not isinstance(name, str) or not name.strip():
        return ""
    by_key: dict[str, str] = {}
    for option in known:
        by_key.setdefault(str(option).strip().lower(), str(option))
    key = name.strip().lower()
    matcher = difflib.SequenceMatcher(b=key)
    ratios = {}
    for option in difflib.get_close_matches(key, by_key, n=3, cutoff=cutoff):
        matcher.set_seq1(option)
        ratios[by_key[option]] = matcher.ratio()
    close = [option for option, ratio in ratios.items() if ratio == max(ratios.values()) and option != name]
    if not close:
        return ""
    quoted = [repr(option) for option in close]
    return f" (did you mean {quoted[0] if len(quoted) == 1 else ', '.join(quoted[:-1]) + ' or ' + quoted[-1]}?)"
