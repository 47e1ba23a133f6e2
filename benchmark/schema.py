"""JSON schemas generated from the dataclasses, the one declaration of every setting (benchmark.spec).

- The cell spec's structure (`json_schema`, `check_structure`: the spec's first validation layer) and a
  method's hyper-parameters (`method_schema`, from its dataclass).
- The config's experiment run settings (`run_settings`, `experiment_schema`): one key per field of the
  spec's parts (Sampling, Rounds; not those marked `config=False`), with its type, bounds, choices,
  default and description; a field marked `axis` also takes a list (a sweep axis: steps, algorithm). The
  sweep sets the spec's fields from the experiment by these names (benchmark.sweep.cell_spec).
- The generated block of workflow/schemas/config.schema.yaml and the experiment key table of
  config/README.md, between markers: `python -m benchmark schema --write` writes them, `--check` (and
  tests/test_schema.py) fails when they are out of date. The schema stays a file because Snakemake's
  `validate` takes a file name (it loads it and resolves its `$ref`s relative to it) and the workflow, the
  tests and editors read that file; a schema built only in code would leave them a second copy.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from pathlib import Path
from typing import Literal

from benchmark.spec import BOUNDS, CellSpec

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "workflow" / "schemas" / "config.schema.yaml"
README_FILE = ROOT / "config" / "README.md"

# --- the cell spec's structure --------------------------------------------------------------------

_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "object",
               type(None): "null"}


def _type_schema(hint) -> dict:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return {"enum": list(typing.get_args(hint))}
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return {"anyOf": [_type_schema(h) for h in typing.get_args(hint)]}
    if dataclasses.is_dataclass(hint):
        return dataclass_schema(hint)
    if hint in _JSON_TYPES:
        kind = _JSON_TYPES[hint]
        return {"type": ["number", "integer"]} if kind == "number" else {"type": kind}
    return {}


def dataclass_schema(cls, skip: tuple[str, ...] = ()) -> dict:
    """A JSON schema of a dataclass: its fields with their types, no others; fields without a
    default are required. Descriptions come from the fields' help."""
    hints = typing.get_type_hints(cls)
    props, required = {}, []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        props[f.name] = _type_schema(hints[f.name]) | ({"description": f.metadata["help"]}  # bounds: the meaning layer
                                                        if "help" in f.metadata else {})
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


@functools.cache
def json_schema() -> dict:
    """The cell spec's JSON schema (structure only; `params` per method: `method_schema`); one per process."""
    return dataclass_schema(CellSpec)


def method_schema(name: str) -> dict:
    """The JSON schema of method `name`'s hyper-parameters, generated from its dataclass."""
    from benchmark.methods import METHODS

    return dataclass_schema(METHODS[name], skip=("strength",))


def check_structure(data) -> None:
    """ValueError naming the first structural problem of a serialised spec."""
    import jsonschema

    def check(instance, schema, where):
        error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema).iter_errors(instance))
        if error is not None:
            path = ".".join(str(p) for p in error.absolute_path)
            raise ValueError(f"cell spec{where}{'.' + path if path else ''}: {error.message}")

    check(data, json_schema(), "")
    from benchmark.methods import METHODS

    if data["method"] in METHODS:  # an unknown method is named by the meaning layer
        check(data.get("params", {}), method_schema(data["method"]), ".params")


# --- the config's experiment run settings ---------------------------------------------------------

def run_settings() -> dict[str, tuple[tuple[str, ...], dataclasses.Field, object]]:
    """{experiment key: (path in the spec, field, type hint)}: every leaf field of the spec's parts that is
    a config key (not `config=False`), in declaration order."""
    out = {}
    hints = typing.get_type_hints(CellSpec)
    for part in dataclasses.fields(CellSpec):
        if not dataclasses.is_dataclass(hints[part.name]) or part.metadata.get("config") is False:
            continue
        cls = hints[part.name]
        for f in dataclasses.fields(cls):
            if f.metadata.get("config") is not False:
                out[f.name] = ((part.name, f.name), f, typing.get_type_hints(cls)[f.name])
    return out


def setting(exp: dict, key: str):
    """Experiment `exp`'s run setting `key`: its value, else the spec field's default (no second copy of it)."""
    return exp[key] if key in exp else run_settings()[key][1].default


def _value_schema(hint, meta) -> list[dict]:
    """The JSON-schema branches of one value of a field (a nullable field: null first)."""
    if typing.get_origin(hint) is Literal:
        return [{"type": "string", "enum": list(typing.get_args(hint))}]
    if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return [b for h in typing.get_args(hint) for b in _value_schema(h, meta)]
    if hint is type(None):
        return [{"type": "null"}]
    kind = {int: "integer", float: "number", bool: "boolean", str: "string"}[hint]
    return [{"type": kind} | {k: meta[k] for k in BOUNDS if k in meta and kind in ("integer", "number")}]


def setting_schema(field: dataclasses.Field, hint) -> dict:
    """The config schema of one run setting: its value (or a list of values for an `axis`), default and
    description, from the field."""
    branches = _value_schema(hint, field.metadata)
    if field.metadata.get("axis"):
        values = [b for b in branches if b != {"type": "null"}]
        items = values[0] if len(values) == 1 else {"oneOf": values}
        branches = branches + [{"type": "array", "minItems": 1, "items": items}]
    schema = branches[0] if len(branches) == 1 else {"oneOf": branches}
    list_note = "; a list is a sweep axis" if field.metadata.get("axis") else ""
    return schema | {"default": field.default, "description": field.metadata["help"] + list_note}


def experiment_schema() -> dict[str, dict]:
    """{key: schema} of the experiment's run settings, generated from the spec's fields."""
    return {key: setting_schema(f, hint) for key, (_, f, hint) in run_settings().items()}


# --- the generated parts of the schema file and config/README.md -----------------------------------

BEGIN = "BEGIN generated by `python -m benchmark schema --write` from benchmark/spec.py: do not edit"
END = "END generated"


def _flow(node) -> str:
    """One line of YAML flow style that PyYAML (YAML 1.1, what Snakemake reads with) reads back as `node`."""
    import yaml

    return yaml.safe_dump(json.loads(json.dumps(node)), default_flow_style=True, sort_keys=False,  # no anchors
                          width=10**9).strip()


def schema_block(indent: str) -> list[str]:
    return [f"{indent}{key}: {_flow(schema)}" for key, schema in experiment_schema().items()]


def _replace_between(text: str, begin: str, end: str, lines_of) -> str:
    """`text` with the lines strictly between the line holding `begin` and the next holding `end` replaced by
    `lines_of(indent of the begin line)`."""
    lines = text.split("\n")
    i = next(n for n, line in enumerate(lines) if begin in line)
    j = next(n for n in range(i + 1, len(lines)) if end in lines[n])
    indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
    return "\n".join(lines[:i + 1] + lines_of(indent) + lines[j:])


def experiment_properties(schema_text: str) -> tuple[dict, list[str]]:
    """(properties, required keys) of one experiment in the config schema's text."""
    import yaml

    node = yaml.safe_load(schema_text)["properties"]["experiments"]["additionalProperties"]
    return node["properties"], node.get("required", [])


def _cell(value) -> str:
    if isinstance(value, float):
        return f"`{value!r}`"
    return f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"


def readme_table(schema_text: str) -> list[str]:
    """The experiment key table of config/README.md: every key of the schema's experiment, in its order, with
    its default (`required`) and description (a run setting's: its spec field's help)."""
    props, required = experiment_properties(schema_text)
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for key, schema in props.items():
        default = "required" if key in required else _cell(schema["default"]) if "default" in schema else ""
        rows.append(f"| `{key}` | {default} | {schema.get('description', '').replace('|', chr(92) + '|')} |")
    return rows


def generated() -> dict[Path, str]:
    """{file: its text with the generated parts as they should be}."""
    schema_text = _replace_between(SCHEMA_FILE.read_text(encoding="utf-8"), BEGIN, END, schema_block)
    readme = _replace_between(README_FILE.read_text(encoding="utf-8"), BEGIN, END,
                              lambda indent: [""] + readme_table(schema_text) + [""])
    return {SCHEMA_FILE: schema_text, README_FILE: readme}


def stale() -> list[Path]:
    """The files whose generated parts are out of date."""
    return [path for path, text in generated().items() if path.read_text(encoding="utf-8") != text]


def write() -> list[Path]:
    """Rewrite the generated parts; returns the files changed."""
    changed = stale()
    for path, text in generated().items():
        if path in changed:
            path.write_text(text, encoding="utf-8")
    return changed
