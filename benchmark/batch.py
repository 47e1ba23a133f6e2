"""Batched cells: cells that differ only in strength and seed share one sampling pass.

A *group* is what one workflow job runs: cells whose specs are equal but for strength and seed (task,
denoiser, objective, the method and its other hyper-parameters, sampling, rounds), at most `size` of them
(`group_key`, `groups`). A group runs as one or more *passes* (`passes`): one batch of n x B chains through
the rounds (benchmark.optimize.run_rounds), chain i of cell c on cell c's own noise stream and strength.
Cells share a pass when

- their method `batches_strengths` (every use of its strength takes a per-chain tensor: the contract's
  "batched strengths" check), or they have the same strength;
- their declared cost formulas agree (tfg without a gradient at strength 0 costs less than with one), so
  the pass's counted cost splits evenly: each cell records its share, n-th of the pass's;
- they do not run Algorithm 2, whose cells each fine-tune their own network: one pass each.

Chains are independent (the contract's "batch equals single chains"), so each cell's rows equal a solo
run of it: exactly where the batch size does not change float rounding, else to the contract's
tolerance (tests/test_batch.py states both). Each cell still writes its own Parquet file.
"""

from __future__ import annotations

import functools
import json

from benchmark.spec import CellSpec


def group_key(spec: CellSpec) -> str:
    """What a group's cells share: the whole spec but strength and seed (JSON), the files it loads included."""
    d = spec.to_dict()
    d.pop("strength")
    d.pop("seed")
    return json.dumps(d, sort_keys=True)


@functools.lru_cache(maxsize=4096)
def _declared(method: str, strength: float, params: str, steps: int):
    """The declared cost per sample of a method at a setting (`declared_costs`), or None when it has no
    formula that takes only the steps; cached: the workflow asks for every cell, several times."""
    from benchmark.methods import make_method
    from benchmark.methods.base import declared_costs

    try:
        return declared_costs(make_method(method, strength, **json.loads(params)), steps)
    except (ValueError, NotImplementedError):
        return None


def _spec_costs(spec: CellSpec):
    return _declared(spec.method, float(spec.strength), json.dumps(spec.params, sort_keys=True),
                     spec.sampling.steps or 1)


def _costs_key(spec: CellSpec):
    """The method's declared cost per sample at this spec's steps (a formula that needs the grid's
    timesteps: the strength itself, so such cells share a pass only at equal strength)."""
    costs = _spec_costs(spec)
    return ("strength", float(spec.strength)) if costs is None else costs


def pass_key(spec: CellSpec):
    """Cells with equal pass keys (and group keys) share a sampling pass."""
    from benchmark.methods import method_class

    if spec.rounds.algorithm == "alg2":
        return ("alg2", spec.digest())
    strength = None if getattr(method_class(spec.method), "batches_strengths", False) else float(spec.strength)
    return (group_key(spec), strength, _costs_key(spec))


def passes(specs: list[CellSpec]) -> list[list[int]]:
    """The sampling passes of cells: lists of indices into `specs`, each within one group, grouped by group in
    order of first appearance."""
    by_group: dict[str, dict] = {}
    for i, spec in enumerate(specs):
        by_group.setdefault(group_key(spec), {}).setdefault(pass_key(spec), []).append(i)
    return [members for group in by_group.values() for members in group.values()]


#: An objective evaluation or gradient in denoiser evaluations, for `work`: digits' classifier against its
#: U-Net, measured (shen's 10 augmentations a step against dps); analytic vector objectives cost less.
OBJECTIVE_WEIGHT = 0.1


def work(spec: CellSpec) -> float:
    """A cell's sampling work in denoiser evaluations (a VJP as two, an objective evaluation or gradient as
    OBJECTIVE_WEIGHT): its chains times round 0's unguided steps plus `rounds` times its method's declared
    cost per sample (benchmark.methods.base.declared_costs); what packs jobs of one task and denoiser evenly
    (`pack`). A formula that needs the grid's timesteps counts as a forward, a VJP, an objective evaluation and
    gradient per step."""
    steps = spec.sampling.steps or 1
    U, U_b, G, G_b = _spec_costs(spec) or (steps, steps, steps, steps)
    per_sample = U + 2 * U_b + OBJECTIVE_WEIGHT * (G + G_b)
    return float(spec.rounds.samples * (steps + spec.rounds.rounds * per_sample))


def pack(chunks: list[list[str]], weights: dict[str, float], size: int, spread: int = 1) -> list[list[str]]:
    """Chunks of cell ids (each at most `size`) packed whole into ceil(cells / size) jobs, at least `spread`
    (as many as there are chunks at most), more when their sizes do not fit, of even total weight: heaviest
    first, each into the lightest job with room (LPT). Jobs come heaviest first, each with its chunks in
    their given order."""
    n_jobs = max(1, -(-sum(len(c) for c in chunks) // size), min(spread, len(chunks)))
    weight = [sum(weights[i] for i in c) for c in chunks]
    jobs: list[list[int]] = [[] for _ in range(n_jobs)]          # indices into chunks
    load, cells = [0.0] * n_jobs, [0] * n_jobs
    for k in sorted(range(len(chunks)), key=lambda k: (-weight[k], k)):
        room = [j for j in range(len(jobs)) if cells[j] + len(chunks[k]) <= size]
        if not room:
            jobs.append([])
            load.append(0.0)
            cells.append(0)
            room = [len(jobs) - 1]
        j = min(room, key=lambda j: (load[j], j))
        jobs[j].append(k)
        load[j] += weight[k]
        cells[j] += len(chunks[k])
    packed = [[i for k in sorted(job) for i in chunks[k]] for job in jobs if job]
    return sorted(packed, key=lambda ids: -sum(weights[i] for i in ids))


def chunk_id(ids: list[str]) -> str:
    """The name of a chunk of cell ids: its first id, with '+<n>' for n > 1 cells."""
    return ids[0] if len(ids) == 1 else f"{ids[0]}+{len(ids)}"


def check_group(specs: list[CellSpec]) -> None:
    """ValueError unless the specs differ only in strength and seed, and no two are the same cell."""
    if not specs:
        raise ValueError("a group needs at least one cell")
    keys = {group_key(s) for s in specs}
    if len(keys) > 1:
        first = json.loads(next(iter(keys)))
        other = next(json.loads(k) for k in keys if json.loads(k) != first)
        differ = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
        raise ValueError(f"the cells of one group must differ only in strength and seed; these also differ in "
                         f"{differ}")
    seen = [(float(s.strength), s.seed) for s in specs]
    if len(set(seen)) != len(seen):
        raise ValueError(f"a group lists a cell twice (strength, seed): {sorted(x for x in seen if seen.count(x) > 1)}")


def groups(cells: dict[str, CellSpec], size: int) -> dict[str, list[str]]:
    """Cell ids grouped by `group_key`, in their order, in chunks of at most `size` cells; a chunk of a
    group is named after its first cell id ('<first cell id>+<n>' for n cells, or the cell id alone)."""
    if size < 1:
        raise ValueError(f"group size must be >= 1, got {size}")
    by_key: dict[str, list[str]] = {}
    for cell_id, spec in cells.items():
        by_key.setdefault(group_key(spec), []).append(cell_id)
    out = {}
    for ids in by_key.values():
        for i in range(0, len(ids), size):
            chunk = ids[i:i + size]
            out[chunk_id(chunk)] = chunk
    return out
