"""A method registered in one place shows in the report: its name in tables, its colour in figures, its place in
the order, its variant fields in labels and columns (no model is loaded here)."""
from __future__ import annotations

import dataclasses

import matplotlib
import pytest
import torch
from test_report import make_record

from superpos import report
from superpos.config import option
from superpos.engine import ResultsStore, RunConfig, load_records
from superpos.methods import METHODS, PALETTE, MethodSpec, SimpleConfig, SimplePrompt, register_method

#: Not a colour any method gets by default: seen in a figure, it came from the registration.
COLOUR = "#00a087"


@dataclasses.dataclass
class ScaledConfig(SimpleConfig):
    """Simple prompt tuning with the prompt scaled by a constant."""

    kind = "scaled"
    scale: float = option(1.0, help="The constant the prompt is multiplied by.", above=0)


class ScaledPrompt(SimplePrompt):
    """``scale * prompt``: a free parameter, scaled."""

    name = "scaled"
    config_class = ScaledConfig

    def prompt_matrix(self) -> torch.Tensor:
        return self.prompt * self.config.scale


@pytest.fixture()
def scaled():
    """The method ``scaled``, registered between Residual PT and SuperPos PT for the length of a test."""
    spec = register_method("scaled", ScaledConfig, ScaledPrompt, label="Scaled PT", colour=COLOUR, order=2.5,
                           variant_fields={"scale": "×"})
    try:
        yield spec
    finally:
        METHODS.pop("scaled", None)


@pytest.fixture()
def runs(tmp_path, scaled):
    """Two seeds each of simple, superpos, scaled and scaled with ``scale=2.0``, on one task."""
    store = ResultsStore(tmp_path / "store")
    for seed in (0, 1):
        for method, config, accuracy in (("simple", {}, 40.0), ("superpos", {}, 60.0), ("scaled", {}, 50.0),
                                         ("scaled", {"scale": 2.0}, 55.0)):
            make_record(store, method=method, method_config=config, seed=seed, metrics={"accuracy": accuracy + seed},
                        history_scores=(accuracy / 2, accuracy))
    return report.with_variants(load_records(store))


def _hex(colour) -> str:
    return matplotlib.colors.to_hex(colour)


def test_the_registration_carries_what_the_report_needs(scaled):
    assert isinstance(scaled, MethodSpec) and METHODS["scaled"] is scaled
    assert (scaled.label, scaled.colour, scaled.order) == ("Scaled PT", COLOUR, 2.5)
    assert scaled.config_class is ScaledConfig and scaled.method_class is ScaledPrompt
    assert scaled.description == "``scale * prompt``: a free parameter, scaled."
    config = RunConfig(task="bbc-topic", method="scaled", method_config={"scale": 2.0}).resolved()
    assert config.label() == "bbc-topic/scaled n_prompts=10 scale=2.0 dropout=off seed=0"  # its variant fields


def test_a_registration_without_report_fields_gets_defaults(scaled):
    @dataclasses.dataclass
    class PlainConfig(SimpleConfig):
        kind = "plain"

    class PlainPrompt(SimplePrompt):
        name = "plain"
        config_class = PlainConfig

    try:
        spec = register_method("plain", PlainConfig, PlainPrompt)
        used = {s.colour for name, s in METHODS.items() if name != "plain"}
        assert spec.label == "plain" and spec.variant_fields == {}
        assert spec.colour == next(c for c in PALETTE if c not in used)  # the first free colour of the palette
        assert spec.order > max(s.order for name, s in METHODS.items() if name != "plain")  # after every other
        with pytest.raises(ValueError, match="not fields of PlainConfig"):
            register_method("plain", PlainConfig, PlainPrompt, variant_fields={"nope": "n"}, replace=True)
    finally:
        METHODS.pop("plain", None)


def test_a_registered_method_shows_in_tables_by_its_name_in_its_place(runs):
    scores = report.task_scores(runs)
    assert "scale" in runs.columns and "scale" in scores.columns  # a variant field gets a column of its own
    table, _ = report.method_table(scores)
    assert list(table["Method"]) == ["Simple PT", "Scaled PT", "Scaled PT ×=2.0", "SuperPos PT"]
    markdown = report.markdown_table(table)
    assert "| Scaled PT |" in markdown and "| Scaled PT ×=2.0 |" in markdown
    assert report.methods_named(runs) == "Simple PT, Scaled PT and SuperPos PT"
    assert {"Scaled PT", "Scaled PT ×=2.0"} <= set(report.cost_table(runs)["Method"])


def test_a_registered_method_is_drawn_in_its_colour(runs):
    figure = report.plot_curves(report.learning_curves(runs))
    strict = figure.axes[0]
    colours = {_hex(line.get_color()) for line in strict.get_lines()}
    assert COLOUR in colours  # its default setting, in the colour it was registered with
    legend = {text.get_text(): _hex(handle.get_color())
              for handle, text in zip(figure.legends[0].legend_handles, figure.legends[0].get_texts())}
    assert legend["Scaled PT"] == COLOUR
    assert legend["Scaled PT ×=2.0"] not in (COLOUR, legend["Simple PT"], legend["SuperPos PT"])  # a shade of its own
    assert list(legend) == ["Simple PT", "Scaled PT", "Scaled PT ×=2.0", "SuperPos PT"]

    scores = report.task_scores(report.select(runs, variant=["simple", "scaled", "superpos"]))
    bars = report.plot_factor(scores, "variant", xlabel="method", kind="bar")
    faces = [_hex(patch.get_facecolor()) for patch in bars.axes[0].patches]
    assert faces == [legend["Simple PT"], COLOUR, legend["SuperPos PT"]]  # the same colour in every figure

    lines = report.plot_factor(report.task_scores(report.select(runs, method="scaled")), "scale", xlabel="scale")
    (container,) = lines.axes[0].containers
    assert _hex(container.lines[0].get_color()) == COLOUR
    assert list(container.lines[0].get_xdata()) == [1.0, 2.0]
