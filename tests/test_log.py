"""Progress in the rules' logs: every pre-training epoch is one log record (epoch, loss, seconds) through
Python logging, which the rule's log file captures; benchmark.log.setup_logging sends them to stderr."""

import logging
import re

from benchmark.denoisers import pretrain
from benchmark.log import setup_logging
from benchmark.tasks import make_task

LOGGER = "benchmark.denoisers.pretrain"
EPOCH = re.compile(r"^pretrain subspace: epoch (\d+)/(\d+), loss (\S+), (\d+\.\d) s$")


def test_pretraining_logs_one_record_per_epoch_with_its_loss(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    _, _, report = pretrain(make_task("subspace"), T=20, hidden=16, depth=1, n_train=256, n_heldout=64,
                            epochs=3, batch_size=128, lr=2e-3, seed=0)
    records = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]
    assert len(records) == 3, [r.getMessage() for r in caplog.records]
    matches = [EPOCH.match(r.getMessage()) for r in records]
    assert all(matches), [r.getMessage() for r in records]
    assert [(int(m[1]), int(m[2])) for m in matches] == [(1, 3), (2, 3), (3, 3)]
    assert float(matches[-1][3]) == float(f"{report['train_loss_last_epoch']:.5g}")  # the epoch's mean loss


def test_setup_logging_writes_compact_lines_to_stderr(capsys):
    logger = logging.getLogger("benchmark")
    saved = logger.handlers[:], logger.level
    logger.handlers.clear()
    try:
        setup_logging("INFO")
        assert setup_logging("INFO") is logger and len(logger.handlers) == 1  # idempotent
        logging.getLogger(LOGGER).info("pretrain subspace: epoch %d/%d", 1, 2)
        err = capsys.readouterr().err.strip()
        assert re.fullmatch(rf"\d\d:\d\d:\d\d INFO {LOGGER}: pretrain subspace: epoch 1/2", err), err
    finally:
        logger.handlers[:], _ = saved
        logger.setLevel(saved[1])


def test_a_cell_logs_one_record_per_round_with_reward_fidelity_and_seconds(caplog):
    from benchmark.cell import run_cell
    from benchmark.spec import CellSpec

    caplog.set_level(logging.INFO, logger="benchmark.cell")
    rows = run_cell(CellSpec.of(task="subspace", objective="quadratic_off", method="gloss", strength=0.2, rounds=2,
                                samples=4, steps=5, seed=3), "cpu")
    records = [r.getMessage() for r in caplog.records if r.name == "benchmark.cell"]
    assert len(records) == 3, records
    line = re.compile(r"^seed 3 strength 0.2 round (\d)/2: reward (\S+), .*r_off (\S+).*, (\d+\.\d\d) s$")
    matches = [line.match(m) for m in records]
    assert all(matches), records
    reward = {r["round"]: r["value"] for r in rows if r["metric"] == "reward_mean"}
    assert [int(m[1]) for m in matches] == [0, 1, 2]
    assert all(float(m[2]) == float(f"{reward[int(m[1])]:.4g}") for m in matches)
