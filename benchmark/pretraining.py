"""Pre-training in the sweep: which networks a config's cells need, and how each is made.

A task declares the networks it pre-trains (`Task.networks`, benchmark.tasks.networks, which also owns the
names of their settings), each made by one job into the models folder (benchmark.paths.checkpoint_file:
`<models_dir>/<task>_<network>.safetensors`; `pretrain_targets`, `pretrain_cli`); a cell's inputs are the
ones it loads (`cell_networks`: the `trained` denoiser, and for tasks that load networks (`Task.uses_models`,
digits) those of its objective, from the cell's `models_dir`). The config's `pretrain.<task>` block is
checked against the schema the declaration generates (`pretrain_schema`, `check_pretrain`).

A setting of the denoiser given as a list makes a checkpoint family (`checkpoint_family`): one denoiser
per value, the member `<k>=<v>[+..]` naming the network `denoiser.<member>` and the denoiser
`trained.<member>` (`join_member`, `split_member`).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from benchmark.config import ConfigError, coerce_block, fill_defaults
from benchmark.paths import checkpoint_file, cli_value

if TYPE_CHECKING:
    from benchmark.spec import CellSpec
    from benchmark.sweep import SweepCell


def is_trained(denoiser: str) -> bool:
    """The workflow's own checkpoint of the task: `trained`, or a member `trained.<k=v>` of its family."""
    return denoiser == "trained" or denoiser.startswith("trained.")


def split_member(name: str) -> tuple[str, str]:
    """`denoiser.epochs=50` -> ("denoiser", "epochs=50"); a plain name -> (name, "")."""
    base, _, member = name.partition(".")
    return base, member


def join_member(name: str, member: str) -> str:
    """("denoiser", "epochs=50") -> `denoiser.epochs=50`; no member -> the plain name."""
    return f"{name}.{member}" if member else name


def task_networks(task: str) -> dict:
    """The networks task `task` declares (benchmark.tasks.networks): name -> Network."""
    from benchmark.tasks import task_class

    return dict(task_class(task).networks)


def network_needs(task: str, network: str) -> tuple[str, ...]:
    """The networks `network` of `task` waits for (its declaration's `needs`; a family member: its network's)."""
    return task_networks(task)[split_member(network)[0]].needs


def checkpoint_family(config: dict, task: str) -> list[tuple[str, dict]]:
    """The task's denoiser checkpoints: [(member, its pre-training settings)]. A setting of the denoiser
    given as a list (`pretrain.subspace.epochs: [10, 50, 100]`; digits: under `pretrain.digits.denoiser`)
    makes one checkpoint per value (per combination for several lists), each named by its values
    (`epochs=50`, `epochs=50+lr=0.002`): a sweep axis of score quality. No list: one member, "" (the
    names stay `trained` and `<task>_denoiser`)."""
    block = (config.get("pretrain") or {}).get(task) or {}
    single = len(task_networks(task)) == 1
    own = block if single else (block.get("denoiser") or {})
    lists = {k: v for k, v in own.items() if isinstance(v, list)}
    if not lists:
        return [("", block)]
    names = sorted(lists)
    out = []
    for values in itertools.product(*(lists[k] for k in names)):
        member = "+".join(f"{k}={cli_value(v)}" for k, v in zip(names, values))
        chosen = dict(own) | dict(zip(names, values))
        out.append((member, chosen if single else block | {"denoiser": chosen}))
    return out


def member_block(config: dict, task: str, member: str) -> dict:
    """The pre-training settings of one member of the task's denoiser family ("" for the only one)."""
    for m, block in checkpoint_family(config, task):
        if m == member:
            return block
    raise ConfigError(f"pretrain.{task}: no checkpoint {member!r} in the denoiser family; allowed: "
                      f"{[m for m, _ in checkpoint_family(config, task)]}")


def pretrain_schema(task: str) -> dict:
    """The JSON schema of `pretrain.<task>`, generated from the task's network declaration
    (benchmark.tasks.networks.settings_schema)."""
    from benchmark.tasks.networks import settings_schema

    return settings_schema(task, task_networks(task))


def check_pretrain(config: dict) -> None:
    """Each `pretrain.<task>` against the schema its task's declaration generates (`pretrain_schema`),
    defaults filled in place; ConfigError naming the key and what is allowed."""
    import jsonschema

    from benchmark.tasks import TASKS

    for task, block in (config.get("pretrain") or {}).items():
        if task not in TASKS:
            raise ConfigError(f"pretrain.{task}: unknown task; allowed: {sorted(TASKS)}")
        schema = pretrain_schema(task)
        coerce_block(block, schema)  # 1e-3 is a number here too (see coerce_numbers)
        error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema).iter_errors(block))
        if error is not None:
            path = ".".join(str(p) for p in error.absolute_path)
            allowed = ""
            if error.validator == "additionalProperties":
                node = schema
                for part in error.absolute_path:
                    node = node["properties"][part]
                allowed = f"; allowed: {sorted(node['properties'])}"
            raise ConfigError(f"pretrain.{task}{'.' + path if path else ''}: {error.message}{allowed}")
        fill_defaults(block, schema)


def pretrain_cli(config: dict, task: str, network: str = "denoiser") -> list[str]:
    """`python -m benchmark pretrain` arguments of one network of `task` from its declaration (all but
    --task/--out/--report/--device and the files of the networks it needs, which the rule passes as
    --need NAME=FILE): the task-level settings it shares, then its own; a task with one network takes
    them flat under pretrain.<task>, one with several per network (pretrain.<task>.<network>)."""
    from benchmark.tasks.networks import SETTINGS, flag

    networks = task_networks(task)
    network, member = split_member(network)
    if network not in networks:
        if len(networks) <= 1:
            raise ConfigError(f"pretrain.{task}: task {task!r} has one network; allowed: {list(networks)}")
        raise ConfigError(f"pretrain.{task}: no network {network!r}; allowed: {list(networks)}")
    net = networks[network]
    p = member_block(config, task, member) if network == "denoiser" else checkpoint_family(config, task)[0][1]
    own = p if len(networks) == 1 else (p.get(network) or {})
    given = {k: p[k] for k in net.shared if p.get(k) is not None} | \
        {k: own[k] for k in net.settings if own.get(k) is not None}
    settings = network_settings(task, network, given)  # the declaration's defaults, whether or not check_pretrain ran
    args = ["--network", network] if len(networks) > 1 else []
    for key in (k for k in net.takes() if k in settings):
        args += [flag(key), cli_value(settings[key])] if key in SETTINGS else \
            ["--set", f"{key}={cli_value(settings[key])}"]
    return args + ["--task-seed", str(config.get("task_seed", 0))]


def network_settings(task: str, network: str, given: dict) -> dict:
    """The settings network `network` of `task` is trained with: `given`, the rest the defaults its declaration
    names (Network.defaults, through `pretrain_schema`: what the config fills in). The one owner of these
    defaults for the workflow (`pretrain_cli`) and `python -m benchmark pretrain` alike; a setting no
    declaration defaults is the trainer's own."""
    networks = task_networks(task)
    net = networks[split_member(network)[0]]
    block: dict = {}
    fill_defaults(block, pretrain_schema(task))
    own = block if len(networks) == 1 else (block.get(split_member(network)[0]) or {})
    defaults = {k: block[k] for k in net.shared if k in block} | {k: own[k] for k in net.settings if k in own}
    return defaults | dict(given)


def pretrain_targets(cells: dict[str, SweepCell]) -> list[tuple[str, str]]:
    """The (task, network) pairs the cells need pre-trained, sorted: the denoiser of every task with a
    `trained` cell, the networks each cell's objective loads (`Task.network_files`), and whatever those
    need first (`Network.needs`)."""
    from benchmark.tasks import task_class

    wanted: set[tuple[str, str]] = set()
    for c in cells.values():
        s = c.spec
        if is_trained(s.denoiser.name):
            wanted.add((s.task, join_member("denoiser", split_member(s.denoiser.name)[1])))
        wanted |= {(s.task, kind) for kind in task_class(s.task).network_files(s.objective, ".")}
    todo = list(wanted)
    while todo:
        task, name = todo.pop()
        for need in network_needs(task, name):
            if (task, need) not in wanted:
                wanted.add((task, need))
                todo.append((task, need))
    return sorted(wanted)


def pretrain_chain(targets: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Those of the (task, network) `targets` that others need or that need others (the workflow runs them
    first): the longest path of the run (digits' evaluator, then its denoiser)."""
    return [(t, n) for t, n in targets
            if network_needs(t, n) or any(split_member(n)[0] in network_needs(t, m) for u, m in targets if u == t)]


def denoiser_file(config: dict, task: str, denoiser: str) -> str:
    """The checkpoint file of the workflow's own denoiser `trained` (or family member `trained.<member>`)."""
    return checkpoint_file(config.get("models_dir", "models"), task, join_member("denoiser", split_member(denoiser)[1]))


def cell_networks(spec: CellSpec, models_dir: str) -> list[str]:
    """The files of the pre-trained networks a cell loads (its rule's inputs): its denoiser when it is the
    workflow's own (`trained`), and the networks its task loads for its objective."""
    from benchmark.tasks import task_class

    files = [spec.denoiser.source] if is_trained(spec.denoiser.name) else []
    files += [str(p) for p in task_class(spec.task).network_files(spec.objective, models_dir).values()]
    return files
