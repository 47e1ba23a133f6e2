"""The names the workflow gives things on disk, each format written here once.

A cell id is a relative path, the cell's file under `<results_dir>/cells/` less its suffix:
`<task>/<denoiser>/<objective>/<method>/<algorithm>/v<hash>/s<strength>[_<param>=<value>..]_n<steps>_seed<seed>`.
Every component matches SAFE_NAME, so no value can escape the results folder. Its parts:
- the variant path `<task>/.../v<hash>` (`variant_path`): task and denoiser lead, so the workflow's rules can
  name the checkpoint a cell needs by pattern; `v<hash>` hashes the settings fixed within the selection group
  (benchmark.sweep);
- the selection group, `<variant path>/n<steps>` (`group_id`);
- the setting, `s<strength>[_<param>=<value>..]_n<steps>` (`setting_name`); a cell id less its `_seed<seed>`
  is its job key (`job_key`): the cells of one setting differ only in their seed.

A pre-trained network is `<models_dir>/<task>_<network>.safetensors` (`checkpoint_file`) with its JSON
training report beside it (`report_file`); a member of a checkpoint family is the network
`denoiser.<k>=<v>[+..]` (benchmark.pretraining).
"""

from __future__ import annotations

import json
import re

SAFE_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*"
# A relative path of SAFE_NAMEs, written flat (lookaheads, no repeated group) because Snakemake
# matches it against every input file of the aggregate: no component starts with '.' or '-'
# (so no '..'), no empty component, no leading '/'. "//" is written "/[/]": Snakemake warns about
# any "//" in a file pattern, its constraints included.
CELL_ID_PATTERN = r"(?![./-])(?!.*/[.-])(?!.*/[/])[A-Za-z0-9_.+=/-]+"
SAFE = re.compile(rf"^{SAFE_NAME}$")

_SEED = "_seed"
CHECKPOINT_SUFFIX = ".safetensors"


def cli_value(value) -> str:
    """A config value as a path component or CLI argument (JSON, else the raw string): true, not True."""
    return value if isinstance(value, str) else json.dumps(value)


def variant_path(task: str, denoiser: str, objective: str, method: str, algorithm: str, variant_hash: str) -> str:
    """The cell id's leading components: where one method variant's cells of one panel lie."""
    return "/".join([task, denoiser, objective, method, algorithm, "v" + variant_hash])


def steps_name(steps: int | None) -> str:
    return f"n{steps or 'all'}"


def group_id(variant: str, steps: int | None) -> str:
    """A selection group: a variant path and the number of sampling steps."""
    return f"{variant}/{steps_name(steps)}"


def tuned_name(strength: float, values) -> str:
    """A setting's strength and tuned values [(parameter, value)]: `s0.1_sigma=0.5`."""
    return "_".join([f"s{strength!r}", *(f"{k}={cli_value(v)}" for k, v in values)])


def setting_name(strength: float, values, steps: int | None) -> str:
    """A setting's last path component, less the seed: `s0.1_sigma=0.5_n50`."""
    return f"{tuned_name(strength, values)}_{steps_name(steps)}"


def with_seed(setting: str, seed: int) -> str:
    """A setting (or job key) on one seed: the cell id's last component (or the cell id)."""
    return f"{setting}{_SEED}{seed}"


def cell_id(variant: str, setting: str, seed: int) -> str:
    """The id of the cell of `setting` (`setting_name`) of a method variant (`variant_path`) on `seed`."""
    return f"{variant}/{with_seed(setting, seed)}"


def job_key(cell_id: str, strict: bool = True) -> str:
    """The cell id without its seed: the cells of one job differ only in their seed. `strict=False`: whatever
    precedes the last `_seed` ("" if none) of any name, e.g. of a results file that is not a workflow cell."""
    key, sep, seed = cell_id.rpartition(_SEED)
    if strict and (not sep or not seed.isdigit()):
        raise ValueError(f"not a cell id: {cell_id!r}")
    return key


def cell_file(results_dir: str, cell_id: str, suffix: str = "parquet") -> str:
    """A cell's file: its Parquet results, or (`png`) an image task's sample gallery beside them."""
    return f"{results_dir}/cells/{cell_id}.{suffix}"


def checkpoint_name(task: str, network: str) -> str:
    return f"{task}_{network}{CHECKPOINT_SUFFIX}"


def checkpoint_file(models_dir: str, task: str, network: str) -> str:
    """Where the workflow puts network `network` of `task` (one of its `Task.networks`, or a family member)."""
    return f"{models_dir}/{checkpoint_name(task, network)}"


def report_file(models_dir: str, task: str, network: str) -> str:
    """The JSON training report beside a checkpoint."""
    return f"{models_dir}/{task}_{network}.json"


def task_of_checkpoint(filename: str, network: str) -> str | None:
    """The task in a checkpoint's file name `<task>_<network>.safetensors`, or None when it does not follow it."""
    suffix = f"_{network}{CHECKPOINT_SUFFIX}"
    return filename[:-len(suffix)] if filename.endswith(suffix) and len(filename) > len(suffix) else None
