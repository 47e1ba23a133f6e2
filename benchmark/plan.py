"""The workflow's plan of a config: everything workflow/rules/*.smk wire into rules, made by one function.

`workflow_plan(config)` takes the config as Snakemake holds it and, in place, makes numbers of the ones
YAML 1.2 writes (`1e6`: Snakemake reads config files with PyYAML, YAML 1.1, which leaves them strings) and
fills the schema's defaults (benchmark.config); then it makes the tuning cells (benchmark.sweep, which
checks the config first), every evaluation cell the selection could ask for (each tuned setting on each
evaluation seed), the networks to pre-train (benchmark.pretraining) and the jobs of each stage
(benchmark.jobs). A rule calls one of the plan's methods.

The two stages of the protocol: every setting on the tuning seeds, the chosen ones on the evaluation seeds.
The jobs of each stage, {job id: cell ids}: a group of cells that differ only in strength and seed (tuning)
or only in seed (evaluation: one chosen setting), `group_size` at most, run by one process in batched
sampling passes (benchmark.batch); each cell still its own file. `protocol.evaluate: all` runs every setting
on the evaluation seeds too, in the tuning jobs (their batched passes); the selection still reads only the
tuning files and the report only the chosen settings' evaluation files. With `protocol.reuse` (the
selection folder of an earlier run) there is no tuning stage.
"""

from __future__ import annotations

import re
import shlex

from benchmark.config import coerce_numbers, evaluation_seeds, tuning_seeds, validate_config
from benchmark.jobs import check_job_commands, job_priorities, jobs_from_cells, stage_jobs
from benchmark.paths import cell_file, checkpoint_file, job_key, report_file
from benchmark.pretraining import cell_networks, network_needs, pretrain_chain, pretrain_cli, pretrain_targets
from benchmark.sweep import SweepCell, cells_from_config, evaluation_cells, is_image_task


def workflow_plan(config: dict) -> Plan:
    """The plan of `config` (changed in place: numbers coerced, the schema's defaults filled in); a config
    that cannot run raises ConfigError naming the key, a cell job whose command line is too long included."""
    coerce_numbers(config)  # against workflow/schemas/config.schema.yaml, as validate_config below
    validate_config(config)  # the schema (Snakemake's validate, filling in its defaults), its error in one line
    plan = Plan(config)
    # Every job's command fits the OS's limit on one argument (`bash -c` gets it whole), else group_size names it.
    check_job_commands({f"{stage} {job}": plan.job_args(stage, job) for stage in plan.jobs for job in plan.jobs[stage]})
    return plan


def quote(args) -> str:
    return " ".join(shlex.quote(a) for a in args)


def one_of(names) -> str:
    """A wildcard constraint matching exactly `names` (none: matches nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


class Plan:
    """The cells, networks and jobs of a validated config (see the module's docstring)."""

    def __init__(self, config: dict):
        self.config = config
        self.results, self.models = config["results_dir"], config["models_dir"]
        self.cells: dict[str, SweepCell] = cells_from_config(config)
        #: The (task, network) pairs to pre-train, from the tasks' declarations (benchmark.tasks.networks).
        self.pretrain = pretrain_targets(self.cells)
        #: Those that others need or that need others (run first): the longest path of the run.
        self.pretrain_chain = pretrain_chain(self.pretrain)
        #: Cells of image tasks write a gallery beside their Parquet file (a declared output of their job).
        self.image_tasks = sorted({c.spec.task for c in self.cells.values() if is_image_task(c.spec.task)})
        self.stage_seeds = {"tune": tuning_seeds(config), "eval": evaluation_seeds(config)}
        self.eval_cells = evaluation_cells(self.cells, list(jobs_from_cells(self.cells)), self.stage_seeds["eval"])
        self.reuse = (config.get("protocol") or {}).get("reuse")
        self.evaluate_all = config["protocol"]["evaluate"] == "all" and not config["protocol"].get("reuse")
        # The networks of the longest path: the cells that load one start last (spread over job_spread jobs, first).
        self.chain_files = {checkpoint_file(self.models, t, n) for t, n in self.pretrain_chain}
        self.stage_cells = ({"tune": self.cells | self.eval_cells} if self.evaluate_all
                            else {"tune": self.cells, "eval": self.eval_cells})
        self.jobs = {"tune": stage_jobs(self.stage_cells["tune"], config["group_size"], spread=config["job_spread"],
                                        first=self.chain_files, models_dir=self.models)}
        if not self.evaluate_all:
            self.jobs["eval"] = stage_jobs(self.eval_cells, config["group_size"], by_setting=True)
        #: Which cell jobs start first: those on the longest path (after digits' evaluator and denoiser), heavier
        #: first.
        self.priorities = {stage: job_priorities(self.jobs[stage], self.stage_cells[stage], self.chain_files,
                                                 self.models) for stage in self.jobs}
        self._args: dict[tuple[str, str], str] = {}

    # --- the cell jobs (cells.smk)

    def tasks(self) -> str:
        """The wildcard constraint of `task`: the sweep's tasks (no value can escape the models folder)."""
        return "|".join(sorted({c.spec.task for c in self.cells.values()}))

    def job_rule(self, stage: str, job: str, number: int) -> str:
        """A cell job's name (that of its generated rule), by stage, task and number (`tune_subspace_12`)."""
        return f"{stage}_{self.stage_cells[stage][self.jobs[stage][job][0]].spec.task}_{number}"

    def job_outputs(self, stage: str, job: str, suffix: str) -> list[str]:
        """A job's files of one kind (`parquet`; `png`: the galleries of an image task's cells, else none)."""
        cells = self.jobs[stage][job]
        if suffix == "png" and self.stage_cells[stage][cells[0]].spec.task not in self.image_tasks:
            return []
        return [cell_file(self.results, c, suffix) for c in cells]

    def job_inputs(self, stage: str, job: str) -> list[str]:
        """The pre-trained networks a job's cells load (benchmark.pretraining.cell_networks)."""
        return sorted({f for c in self.jobs[stage][job] for f in cell_networks(self.stage_cells[stage][c].spec,
                                                                                 self.models)})

    def job_args(self, stage: str, job: str) -> str:
        """`python -m benchmark run` arguments of a job: its cells' specs (one JSON per run of cells that differ
        only in strength and seed, benchmark.spec.specs_to_json), one Parquet file per cell, and the round
        checkpoints' interval."""
        from benchmark.spec import specs_to_json

        if (stage, job) not in self._args:
            self._args[stage, job] = quote(
                ["--spec", *specs_to_json([self.stage_cells[stage][c].spec for c in self.jobs[stage][job]])]
                + ["--out", *self.job_outputs(stage, job, "parquet")]
                + ["--checkpoint-every", str(self.config["checkpoint_every"])])
        return self._args[stage, job]

    def job_passes(self, stage: str, job: str) -> int:
        """The sampling passes a job runs one after another (benchmark.batch.passes per group of its cells)."""
        from benchmark.batch import passes

        return len(passes([self.stage_cells[stage][c].spec for c in self.jobs[stage][job]]))

    @staticmethod
    def job_log(stage: str, job: str, kind: str) -> str:
        """A job's log (kind `cells`) or benchmark file (kind `benchmarks`)."""
        return f"logs/{kind}/{job}_{stage}.{'log' if kind == 'cells' else 'tsv'}"

    # --- the selection, the aggregate and the report (report.smk)

    def tuning_files(self) -> list[str]:
        """The tuning cells' files (none with `protocol.reuse`: no tuning stage)."""
        return [] if self.reuse else [cell_file(self.results, c) for c in self.cells]

    def tuning_galleries(self) -> list[str]:
        """The sample galleries of the tuning cells of image tasks (beside their Parquet files)."""
        return [cell_file(self.results, c, "png") for c, cell in self.cells.items()
                if cell.spec.task in self.image_tasks and not self.reuse]

    def select_groups(self) -> dict[str, str]:
        """The cell table the selection reads: job (a setting) -> its selection group (method variant)."""
        return {job_key(c): a.group for c, a in self.cells.items()}

    def evaluation_files(self, selected: str) -> list[str]:
        """The evaluation cells of the settings chosen in the selection folder `selected`."""
        return [cell_file(self.results, c) for c in self._chosen(selected)]

    def evaluation_galleries(self, selected: str) -> list[str]:
        """The sample galleries (next to their Parquet files) of the evaluation cells of image tasks."""
        return [cell_file(self.results, c, "png") for c, cell in self._chosen(selected).items()
                if cell.spec.task in self.image_tasks]

    def _chosen(self, selected: str) -> dict[str, SweepCell]:
        from benchmark.report.verdict import chosen_jobs

        return evaluation_cells(self.cells, chosen_jobs(selected), self.stage_seeds["eval"])

    def pretrain_reports(self) -> list[str]:
        """The training reports of the pre-trained networks (the report's inputs)."""
        return [report_file(self.models, t, n) for t, n in self.pretrain]

    # --- pre-training (pretrain.smk)

    def pretrain_outputs(self) -> dict[str, str]:
        """The pretrain rule's outputs, patterns of the wildcards `task` and `network`: the checkpoint and its
        training report."""
        return {"checkpoint": checkpoint_file(self.models, "{task}", "{network}"),
                "report": report_file(self.models, "{task}", "{network}")}

    def pretrain_wildcards(self, chain: bool = False) -> dict[str, str]:
        """The pretrain rule's wildcard constraints: exactly the (task, network) pairs to pre-train (`chain`:
        those on the longest path)."""
        targets = self.pretrain_chain if chain else self.pretrain
        return {"task": one_of(sorted({t for t, _ in targets})), "network": one_of(sorted({n for _, n in targets}))}

    def pretrain_needs(self, task: str, network: str) -> list[str]:
        """The checkpoints of the networks this one waits for (its declaration's `needs`); a member of a
        checkpoint family (`denoiser.epochs=50`) waits for what its network does."""
        return [checkpoint_file(self.models, task, n) for n in network_needs(task, network)]

    def pretrain_args(self, task: str, network: str, needs: list[str]) -> str:
        """`python -m benchmark pretrain` arguments of one network (benchmark.pretraining.pretrain_cli) and
        `--need NAME=FILE` for each of the files `needs` of the networks it waits for."""
        return quote(pretrain_cli(self.config, task, network)
                     + [a for n, f in zip(network_needs(task, network), needs) for a in ("--need", f"{n}={f}")])
