"""The best-point rule, as one pure function over evaluation points (dicts with ``score``, ``dagger`` and
``lenient_score``, as :meth:`superpos.tasks.Score.to_dict` writes them)."""
from __future__ import annotations


def improves(best: dict | None, point: dict, *, lenient: bool = False) -> bool:
    """Whether ``point`` replaces ``best`` as the best point so far.

    Strict (the paper's rule, best validation score): a point whose labels are all valid always beats a † one,
    whatever the sign of its score (a † point's strict score is a forced 0: a valid MCC or Pearson of -5 is a
    measurement, that 0 is not); between two points of one kind the higher score wins, the earlier at a tie.
    Lenient: the higher lenient score wins, the earlier at a tie.
    """
    if best is None:
        return True
    if lenient:
        return point["lenient_score"] > best["lenient_score"]
    if best["dagger"] != point["dagger"]:
        return not point["dagger"]
    return point["score"] > best["score"]
