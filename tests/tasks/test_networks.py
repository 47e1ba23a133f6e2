"""benchmark/tasks/networks.py: the declaration of a task's pre-trained networks and the config schema generated
from it: flat for a task with one network, the shared settings on top and each network's own under its name for
several; defaults from the declarations; a list of values (a checkpoint family) for the denoiser only."""

import jsonschema
import pytest

from benchmark.tasks.digits import NETWORKS as DIGITS
from benchmark.tasks.networks import SCORE_MLP, SETTINGS, SHARED, Network, flag, settings_schema


def test_flags_and_what_a_network_takes():
    assert flag("batch_size") == "--batch-size" and flag("T") == "--T"
    net = Network(trainer=print, settings=("epochs", "lr"), shared=("seed", "T"))
    assert net.takes() == ("seed", "T", "epochs", "lr") and net.needs == () and net.defaults == {}
    assert set(SCORE_MLP.takes()) <= set(SETTINGS) and SCORE_MLP.shared == SHARED


def test_one_network_takes_its_settings_flat_with_a_family_for_the_denoiser():
    schema = settings_schema("subspace", {"denoiser": SCORE_MLP})
    props = schema["properties"]
    assert schema["additionalProperties"] is False and list(props) == list(SCORE_MLP.takes())
    assert {k: p["default"] for k, p in props.items()} == SCORE_MLP.defaults
    assert props["epochs"]["anyOf"][0] == {"type": "integer", "minimum": 1}
    assert "checkpoint family" in props["epochs"]["description"]
    jsonschema.validate({"epochs": [5, 10], "hidden": 64}, schema)                # a family of two denoisers
    for bad in ({"epochs": 0}, {"epochs": []}, {"width": 8}, {"schedule": "cubic"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_several_networks_share_the_task_settings_and_nest_their_own():
    schema = settings_schema("digits", DIGITS)
    props = schema["properties"]
    assert list(props)[:3] == ["schedule", "T", "seed"] and set(props) == {"schedule", "T", "seed", *DIGITS}
    assert (props["schedule"]["default"], props["T"]["default"], props["seed"]["default"]) == ("cosine", 200, 0)
    classifier, denoiser = props["classifier"], props["denoiser"]
    assert list(classifier["properties"]) == list(DIGITS["classifier"].settings) and classifier["default"] == {}
    assert "anyOf" in denoiser["properties"]["epochs"] and "anyOf" not in classifier["properties"]["epochs"]
    assert "default" not in classifier["properties"]["epochs"]                   # the trainer's own default applies
    jsonschema.validate({"T": 50, "denoiser": {"epochs": [1, 2]}, "classifier": {"epochs": 1}}, schema)
    for bad in ({"classifier": {"epochs": [1, 2]}}, {"epochs": 3}, {"classifier": {"hidden": 8}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
