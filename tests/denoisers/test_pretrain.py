import pytest
import torch
from safetensors.torch import load_file

from benchmark.cell import CellSpec, run_cell
from benchmark.denoisers.pretrain import load_checkpoint, pretrain, save_checkpoint
from benchmark.tasks import make_task

KW = dict(T=50, hidden=32, depth=1, n_train=1024, n_heldout=256, epochs=2, batch_size=128, lr=2e-3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    task = make_task("subspace")
    model, schedule, report = pretrain(task, seed=0, **KW)
    path = tmp_path_factory.mktemp("models") / "subspace.safetensors"
    save_checkpoint(path, model, schedule, report)
    return task, model, schedule, report, path


def test_pretraining_is_reproducible_from_its_seed(trained):
    task, model, _, report, _ = trained
    model2, _, report2 = pretrain(task, seed=0, **KW)
    for (k, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert torch.equal(a, b), k
    assert report["heldout_loss"] == report2["heldout_loss"]
    model3, _, _ = pretrain(task, seed=1, **KW)
    assert not torch.equal(model.inp.weight, model3.inp.weight)


def test_report_has_heldout_loss_and_oracle_floor(trained):
    *_, report, _ = trained
    assert report["heldout_loss"] > report["oracle_heldout_loss"] > 0  # the oracle is the floor
    assert report["n_params"] > 0 and report["wall_seconds"] > 0


def test_checkpoint_round_trip_is_safe_and_exact(trained):
    task, model, schedule, report, path = trained
    tensors = load_file(str(path))  # plain tensors, no pickle
    assert set(tensors) == set(model.state_dict())
    loaded, schedule2, report2 = load_checkpoint(path)
    assert torch.equal(schedule2.ab, schedule.ab) and report2 == report
    x, t = torch.randn(4, 64), torch.tensor([1, 10, 30, 50])
    with torch.no_grad():
        assert torch.equal(loaded(x, t), model(x, t))
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left behind


def test_v_parametrisation_matches_eps_interface(trained):
    """eps_theta = sqrt(1 - ab) x + sqrt(ab) v_theta, so Tweedie gives x0h = sqrt(ab) x - sqrt(1 - ab) v_theta."""
    _, model, schedule, _, _ = trained
    x, t = torch.randn(3, 64), torch.tensor([5, 25, 40])  # not t = T: Tweedie divides by sqrt(ab_T) ~ 1e-3
    with torch.no_grad():
        e, v = model(x, t), model.velocity(x, t)
    ab = schedule.ab[t].float().unsqueeze(-1)
    x0h = (x - (1 - ab).sqrt() * e) / ab.sqrt()
    assert torch.allclose(x0h, ab.sqrt() * x - (1 - ab).sqrt() * v, atol=1e-4)


def test_missing_or_mismatched_checkpoint(trained, tmp_path):
    *_, path = trained
    with pytest.raises(FileNotFoundError, match="does not exist; make it with `python -m benchmark pretrain --task TASK --network denoiser"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(ValueError, match="was trained on task 'subspace'"):
        run_cell(CellSpec.of(task="sphere", objective="linear", method="none", denoiser="trained",
                          checkpoint=str(path), rounds=0, samples=2))


def test_algorithm2_fine_tunes_the_network_and_algorithm1_does_not(trained):
    *_, path = trained
    spec = dict(task="subspace", objective="quadratic_off", method="gloss", strength=0.2, denoiser="trained",
                checkpoint=str(path), rounds=3, samples=4, steps=10)
    from benchmark.cell import Cell
    for algorithm, changes in (("alg1", False), ("alg2", True)):
        cell = Cell(CellSpec.of(**spec, algorithm=algorithm, finetune_start=2, finetune_lr=1e-3))
        before = {k: v.clone() for k, v in cell.trainable.state_dict().items()}
        rounds = list(cell.rounds())
        assert len(rounds) == 4
        # Algorithm 2 trains on round 2's batch for round 3 (the last: nothing after it), counted in round 3.
        assert [r.costs.finetune_samples for r in rounds] == ([0, 0, 0, 4] if changes else [0] * 4)
        moved = any(not torch.equal(before[k], v) for k, v in cell.trainable.state_dict().items())
        assert moved == changes, algorithm


def _alg_rounds(path, algorithm, **kw):
    from benchmark.cell import Cell
    spec = CellSpec.of(task="subspace", objective="quadratic_off", method="gloss", strength=0.2, denoiser="trained",
                       checkpoint=str(path), samples=4, steps=10, algorithm=algorithm, **kw)
    return list(Cell(spec).rounds())


@pytest.mark.parametrize("settings, first", [
    ({}, 1),                                             # the defaults: finetune_start 0, lr 1e-6 (Guo et al.)
    ({"finetune_start": 1, "finetune_lr": 1e-3}, 2),     # their README's later start, scaled down
])
def test_algorithm2_leaves_algorithm1_from_the_first_round_after_fine_tuning(trained, settings, first):
    """Same noise streams: Algorithm 2's samples equal Algorithm 1's bit for bit up to round finetune_start and
    differ from round finetune_start + 1 on (the first round drawn by a fine-tuned network); by default that is
    round 1, drawn after a step on round 0's unguided batch."""
    *_, path = trained
    alg1, alg2 = (_alg_rounds(path, a, rounds=3, **settings) for a in ("alg1", "alg2"))
    assert [r.index for r in alg2] == [0, 1, 2, 3]
    for k, (a, b) in enumerate(zip(alg1, alg2)):
        if k < first:
            assert torch.equal(a.z, b.z), k
        else:
            assert (a.z - b.z).abs().max() > 0, k


@pytest.mark.parametrize("start", [0, 1, 2])
def test_algorithm2_charges_the_fine_tuning_it_does(trained, start):
    """rounds 3, 2 Adam steps a round, 4 chains: steps on the batches of rounds start..2, each counted in the round
    it serves (start+1..3), none after round 3; the count equals the optimiser's own step counter times 4."""
    *_, path = trained
    rounds = _alg_rounds(path, "alg2", rounds=3, finetune_start=start, finetune_steps=2)
    charged = {0: [0, 8, 8, 8], 1: [0, 0, 8, 8], 2: [0, 0, 0, 8]}[start]
    assert [r.costs.finetune_samples for r in rounds] == charged
    adam = rounds[-1].state["optimizer"]["state"]
    assert {int(s["step"]) for s in adam.values()} == {2 * (3 - start)}
    assert sum(charged) == 4 * 2 * (3 - start)


@pytest.mark.slow
def test_default_vector_recipe_is_as_good_as_the_ten_epoch_one():
    """config.yaml's ScoreMLP recipe (5 epochs at peak lr 0.006, issue 13: half the steps of 10 epochs at
    0.001) reaches a held-out eps-loss within the old recipe's excess over the oracle on both vector tasks
    at seed 0 (old: subspace 0.128052 against 0.126852, sphere 0.113749; new: 0.127697, 0.113571)."""
    from pathlib import Path

    import yaml

    config = yaml.safe_load((Path(__file__).parents[2] / "config/config.yaml").read_text())["pretrain"]
    old = {"subspace": 0.128052, "sphere": 0.113749}
    for name, bound in old.items():
        s = dict(config[name])
        assert s["epochs"] == 5 and s["lr"] == 0.006, s  # the recipe this test measured
        s["schedule_name"] = s.pop("schedule")
        _, _, report = pretrain(make_task(name), seed=0, **s)
        assert report["heldout_loss"] <= bound, (name, report["heldout_loss"])
        if name == "subspace":
            assert report["heldout_loss"] - report["oracle_heldout_loss"] <= 0.128052 - 0.126852
