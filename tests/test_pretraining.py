"""benchmark/pretraining.py: the networks a task pre-trains, as the workflow declares them. Their settings'
schema and defaults come from the tasks' network declarations; each network's command line; the files the
cells load; a list of values is a family of checkpoints."""

import pytest

from benchmark.config import ConfigError
from benchmark.sweep import cells_from_config
from tests.test_sweep import load


def test_pretrain_cli_per_network():
    from benchmark.pretraining import pretrain_cli, task_networks

    config = load("smoke.yaml")
    config["task_seed"] = 2
    config["pretrain"]["digits"]["classifier"] = {"epochs": 3, "lr": 0.01, "batch_size": None}

    def flags(args):
        return dict(zip(args[::2], args[1::2]))

    denoiser = flags(pretrain_cli(config, "digits", "denoiser"))
    assert denoiser == {"--network": "denoiser", "--seed": "0", "--task-seed": "2", "--schedule": "cosine", "--T": "50",
                        "--epochs": "1", "--width": "8", "--quality-samples": "16", "--quality-steps": "5"}
    classifier = flags(pretrain_cli(config, "digits", "classifier"))
    assert classifier == {"--network": "classifier", "--seed": "0", "--task-seed": "2", "--epochs": "3", "--lr": "0.01"}
    # classifier guidance checks that the noisy classifier shares the denoiser's schedule
    noisy = flags(pretrain_cli(config, "digits", "noisy_classifier"))
    assert (noisy["--schedule"], noisy["--T"]) == (denoiser["--schedule"], denoiser["--T"])
    assert "--schedule" not in flags(pretrain_cli(config, "digits", "evaluator"))
    with pytest.raises(ConfigError, match=r"pretrain.digits: no network 'unet'; allowed: \['denoiser', "):
        pretrain_cli(config, "digits", "unet")
    with pytest.raises(ConfigError, match=r"pretrain.subspace: task 'subspace' has one network; allowed: \['denoiser'\]"):
        pretrain_cli(config, "subspace", "evaluator")
    assert pretrain_cli(config, "subspace")[:2] == ["--schedule", "cosine"]
    assert set(task_networks("digits")) == {"denoiser", "classifier", "noisy_classifier", "evaluator"}
    assert task_networks("digits")["denoiser"].needs == ("evaluator",) and set(task_networks("subspace")) == {"denoiser"}


def test_network_files_are_the_tasks_contract():
    """The rules name `<models_dir>/<task>_<network>.safetensors`; the task loads the same files, and
    every task that loads networks is an image task (its cells' rule declares the galleries; the images
    task is an image task that loads none: its model is declared under `denoisers`)."""
    from benchmark.pretraining import pretrain_targets, task_networks
    from benchmark.tasks import TASKS
    from benchmark.tasks.digits import MODEL_FILES

    assert MODEL_FILES == {n: f"digits_{n}.safetensors" for n in task_networks("digits")}
    assert all(t.is_image for t in TASKS.values() if t.uses_models)
    assert {name for name, t in TASKS.items() if t.is_image and not t.uses_models} == {"images"}
    assert pretrain_targets(cells_from_config(load())) == [
        ("digits", n) for n in sorted(task_networks("digits"))] + [("sphere", "denoiser"), ("subspace", "denoiser")]


def test_pretrain_keys_come_from_the_tasks_network_declarations():
    """`pretrain.<task>` is checked against the schema its task's networks generate: flat for one network,
    shared settings plus one block per network for several; defaults filled; a misspelt key named with
    what is allowed there."""
    from benchmark.pretraining import check_pretrain, pretrain_schema

    assert set(pretrain_schema("subspace")["properties"]) == {"schedule", "T", "seed", "hidden", "depth", "epochs",
                                                              "batch_size", "lr", "n_train"}
    digits = pretrain_schema("digits")["properties"]
    assert set(digits) == {"schedule", "T", "seed", "denoiser", "classifier", "noisy_classifier", "evaluator"}
    assert set(digits["denoiser"]["properties"]) == {"epochs", "batch_size", "lr", "width", "quality_samples",
                                                     "quality_steps"}
    config = load("smoke.yaml")
    config["pretrain"]["subspace"].pop("epochs")
    check_pretrain(config)
    assert config["pretrain"]["subspace"]["epochs"] == 10  # the declaration's default
    config["pretrain"]["digits"]["classifier"]["epoch"] = 3
    with pytest.raises(ConfigError, match=r"^pretrain.digits.classifier: Additional properties are not allowed "
                                          r"\('epoch' was unexpected\); allowed: \['batch_size', 'epochs', 'lr', "
                                          r"'width'\]"):
        check_pretrain(config)
    config = load("smoke.yaml")
    config["pretrain"]["subspace"]["T"] = 1
    with pytest.raises(ConfigError, match=r"^pretrain.subspace.T: 1 is less than the minimum of 2"):
        cells_from_config(config)


def test_a_list_of_pretraining_values_is_a_checkpoint_family():
    """`pretrain.subspace.epochs: [10, 50]`: one checkpoint per value, each its own denoiser of the sweep
    (`trained.epochs=10`, ...), pre-trained with its own value; no list: the names stay `trained`."""
    from benchmark.pretraining import checkpoint_family, pretrain_cli, pretrain_targets

    config = load("smoke.yaml")
    assert checkpoint_family(config, "subspace") == [("", config["pretrain"]["subspace"])]
    config["pretrain"]["subspace"]["epochs"] = [1, 3]
    cells = cells_from_config(config)
    trained = {c.spec.denoiser.name: c.spec.denoiser.source for c in cells.values() if c.spec.task == "subspace"
               and c.spec.denoiser.name != "oracle"}
    assert trained == {"trained.epochs=1": "models/smoke/subspace_denoiser.epochs=1.safetensors",
                       "trained.epochs=3": "models/smoke/subspace_denoiser.epochs=3.safetensors"}
    assert {("subspace", "denoiser.epochs=1"), ("subspace", "denoiser.epochs=3")} <= set(pretrain_targets(cells))
    args = pretrain_cli(config, "subspace", "denoiser.epochs=3")
    assert args[args.index("--epochs") + 1] == "3"
    ids = [c for c in cells if "/trained.epochs=" in c]
    assert len({c.split("/")[5] for c in ids if "/alg1/" in c}) == 2  # each checkpoint its own variant hash
    config["pretrain"]["subspace"]["epochs"] = [0, 3]
    with pytest.raises(ConfigError, match=r"^pretrain.subspace.epochs"):
        cells_from_config(config)

