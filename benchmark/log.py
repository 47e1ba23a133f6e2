"""Logging of the long steps (pre-training epochs, cells), so that the rules' log files capture progress.

`setup_logging()` (called once by `python -m benchmark`) sends the `benchmark` loggers' records to stderr,
which every rule redirects into its log file, one compact line each:

    12:03:04 INFO benchmark.denoisers.pretrain: pretrain subspace: epoch 3/10, loss 0.1342, 1.8 s

Progress bars (tqdm) are drawn only on a terminal, and log lines then go through tqdm so that they do
not break the bar."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATEFMT = "%H:%M:%S"


class _StderrHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is when a record is emitted (a redirected or captured stream included)."""

    def __init__(self):
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr


def setup_logging(level: str | int = "INFO") -> logging.Logger:
    """The `benchmark` logger at `level` with one stderr handler in the compact format (time, level,
    logger, message); idempotent (a second call only sets the level). Returns the logger."""
    logger = logging.getLogger("benchmark")
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    if not any(getattr(h, "_guidebench", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
        handler._guidebench = True
        logger.addHandler(handler)
    return logger
