"""benchmark/catalog.py: `python -m benchmark list` (what is registered, with parameters, defaults and one-line
docs; --json for a machine) and `check-method` (the contract on one method, one line per check)."""

import dataclasses
import json

import pytest

from benchmark.catalog import _first_sentence, method_entries, one_line_doc, task_entries
from benchmark.cli import main
from benchmark.methods import METHODS


def test_the_one_line_doc_is_the_first_sentence_of_the_own_docstring_else_the_modules():
    assert _first_sentence("Runs the thing\n  across two lines. Then more.\nAnd more.") == \
        "Runs the thing across two lines. Then more."
    assert _first_sentence("A heading:\nits body.") == "A heading:"
    assert _first_sentence("No full stop\n\nnext paragraph.") == "No full stop"

    @dataclasses.dataclass
    class Undocumented:                      # a dataclass's generated signature is no documentation
        x: int = 0

    assert one_line_doc(Undocumented) == _first_sentence(__doc__)
    assert one_line_doc(_first_sentence) == ("The docstring's first line, continued while it does not end a "
                                             "sentence (within its first paragraph).")    # a function: its own
    assert one_line_doc(METHODS["gloss"]).startswith("Look-ahead-loss gradient guidance G_loss")


def test_every_method_is_listed_with_its_parameters_types_and_defaults():
    entries = {m["name"]: m for m in method_entries()}
    assert list(entries) == list(METHODS)
    gloss = entries["gloss"]
    assert gloss["origin"] == "built-in" and gloss["class"] == "benchmark.methods.gloss:LookAheadLoss"
    assert gloss["params"] == [{"name": "strength", "type": "float", "default": 0.0},
                               {"name": "sigma", "type": "float", "default": 0.1}]
    mpgd = {p["name"]: p for p in entries["mpgd"]["params"]}
    assert mpgd["schedule"]["type"] == "'rms' | 'constant' | 'sqrt_ab_prev'"         # a Literal's choices


def test_list_json_is_the_catalog(capsys):
    assert main(["list", "--json"]) == 0
    catalog = json.loads(capsys.readouterr().out)
    assert set(catalog) == {"methods", "tasks", "objectives", "denoisers"}
    assert [m["name"] for m in catalog["methods"]] == list(METHODS)
    tasks = {t["name"]: t for t in catalog["tasks"]}
    assert tasks == {t["name"]: json.loads(json.dumps(t, default=repr)) for t in task_entries()}
    assert tasks["subspace"]["oracle"] and "quadratic_off" in tasks["subspace"]["objectives"]
    assert set(tasks["digits"]["networks"]) == {"denoiser", "classifier", "noisy_classifier", "evaluator"}


def test_check_method_on_an_unknown_name_fails_its_first_check_naming_what_is_allowed(capsys):
    assert main(["check-method", "no_such_method"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("FAIL  builds: unknown method 'no_such_method'; allowed: ['bon', 'cg', ")
    assert out[-1] == "1 of 1 checks failed: builds"


@pytest.mark.parametrize("text", ["methods (name: one-line doc;", "  gloss: Look-ahead-loss", "tasks (name: objectives):",
                                  "      pre-trains evaluator: ", "denoisers:"])
def test_list_prints_each_section(capsys, text):
    assert main(["list"]) == 0
    assert text in capsys.readouterr().out
