"""The config: reading a file, numbers as YAML 1.2 writes them, the JSON schema (with its defaults), and the
small readers of its blocks (seeds, a method's grid and variants).

The structure of the config is checked by the JSON schema in workflow/schemas/ (Snakemake's `validate`,
which also fills defaults); benchmark.config_checks adds what a schema cannot know (names against the
registries, impossible combinations, the size of the sweep). Every error is a ConfigError whose message
names the key, the bad value and what is allowed.
"""

from __future__ import annotations

import itertools
import json
import re

from benchmark.paths import SAFE


class ConfigError(ValueError):
    """A config that cannot run; the message names the key, the bad value and what is allowed."""


def safe_name(where: str, value) -> str:
    """`value` as a component of a file name (a cell id), else a ConfigError naming `where`."""
    text = str(value)
    if not SAFE.match(text):
        raise ConfigError(f"{where}: {text!r} cannot be part of a file name; allowed: letters, digits and "
                          "'_.+=-', not starting with '.' or '-' (no '/' or '..')")
    return text


def as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


# A number as YAML 1.2 writes it; PyYAML (YAML 1.1, what Snakemake reads config files with) reads
# `1e6`, `1.0e6` and `1e-3` as strings: an exponent needs a dot and a signed power there (`1.0e+6`).
_YAML12_NUMBER = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def schema_file():
    """The config's JSON schema (what Snakemake's `validate` checks: `validate_config`)."""
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def coerce_numbers(config: dict, schema: dict | str | None = None) -> None:
    """In place: a string that YAML 1.2 reads as a number (`1e6`, `1.0e6`, `2.5e-3`) becomes that number
    where the schema expects a number (an integer where it expects an integer and the value is whole),
    and in a method's `params` / `grid` where the method types the parameter float or int. PyYAML, which
    Snakemake reads config files with, follows YAML 1.1 and leaves such numbers strings."""
    import yaml

    if not isinstance(schema, dict):
        with open(schema or schema_file(), encoding="utf-8") as f:
            schema = yaml.safe_load(f)
    _coerce(config, schema, schema)
    from benchmark.tasks import TASKS, task_class
    from benchmark.tasks.networks import settings_schema

    for task, block in (config.get("pretrain") or {}).items():  # keys from the task's declaration
        if task in TASKS and isinstance(block, dict):
            generated = settings_schema(task, dict(task_class(task).networks))
            _coerce(block, generated, generated)
    from benchmark.methods import METHODS, method_params

    for exp in (config.get("experiments") or {}).values():
        for mname, mcfg in ((exp or {}).get("methods") or {}).items():
            if mname not in METHODS or not isinstance(mcfg, dict):
                continue
            types = method_params(mname)
            for key in ("params", "grid"):
                for k, v in (mcfg.get(key) or {}).items():
                    if types.get(k) in (float, int):
                        kinds = {"number"} if types[k] is float else {"integer"}
                        mcfg[key][k] = [_number(x, kinds) for x in v] if key == "grid" and isinstance(v, list) \
                            else _number(v, kinds)


def coerce_block(node, schema: dict):
    """In place: `node` with the numbers YAML 1.2 writes (`1e-3`) as numbers where `schema` (a root schema,
    its `$ref`s resolved in itself) expects one; returns it (a lone value: its coerced copy)."""
    return _coerce(node, schema, schema)


def _number(value, kinds: set[str]):
    if not isinstance(value, str) or not kinds & {"number", "integer"} or not _YAML12_NUMBER.match(value.strip()):
        return value
    number = float(value)
    return int(number) if "number" not in kinds and number.is_integer() else number


def _schema_types(schema: dict, root: dict) -> set[str]:
    schema = _resolve(schema, root)
    types = schema.get("type", [])
    types = {types} if isinstance(types, str) else set(types)
    for branch in schema.get("oneOf", []) + schema.get("anyOf", []):
        types |= _schema_types(branch, root)
    return types


def _resolve(schema: dict, root: dict) -> dict:
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if ref and ref.startswith("#/"):
        node = root
        for part in ref[2:].split("/"):
            node = node[part]
        return _resolve(node, root)
    return schema if isinstance(schema, dict) else {}


def _coerce(node, schema: dict, root: dict):
    schema = _resolve(schema, root)
    branches = [_resolve(b, root) for b in schema.get("oneOf", []) + schema.get("anyOf", [])]
    if isinstance(node, dict):
        for sch in [schema] + [b for b in branches if "object" in _schema_types(b, root)]:
            props, extra = sch.get("properties", {}), sch.get("additionalProperties")
            for key in list(node):
                sub = props.get(key, extra if isinstance(extra, dict) else None)
                if sub is not None:
                    node[key] = _coerce(node[key], sub, root)
        return node
    if isinstance(node, list):
        for sch in [schema] + [b for b in branches if "array" in _schema_types(b, root)]:
            if isinstance(sch.get("items"), dict):
                node[:] = [_coerce(x, sch["items"], root) for x in node]
        return node
    return _number(node, _schema_types(schema, root))


def fill_defaults(node: dict, schema: dict) -> None:
    """In place: the `default` of every property of `schema` that `node` lacks, nested objects included."""
    for key, sub in schema.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = json.loads(json.dumps(sub["default"]))
        if isinstance(node.get(key), dict):
            fill_defaults(node[key], sub)


def load_config_file(path: str) -> dict:
    """A config file as the workflow would take it: YAML syntax and duplicate keys named by file:line:column,
    numbers as YAML 1.2 writes them, the schema (its defaults filled in; an error at file:line of the key).
    What Snakemake cannot say: its own config loader reports a YAML error without the file or the line."""
    import yaml

    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        config = yaml.load(text, Loader=_unique_key_loader())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        context = f" ({exc.context} at line {exc.context_mark.line + 1})" if exc.context and exc.context_mark else ""
        raise ConfigError(f"{where}: YAML syntax error: {exc.problem}{context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML error: {str(exc).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config file is a mapping of keys (results_dir, seeds, experiments ...)")
    coerce_numbers(config)
    try:
        validate_config(config)
    except ConfigError as exc:
        line = _key_line(text, getattr(exc, "keys", []))
        raise ConfigError(f"{path}{f':{line}' if line else ''}: {exc}") from None
    return config


def validate_config(config: dict) -> None:
    """The config against workflow/schemas/config.schema.yaml, as the workflow checks it (benchmark.plan and
    check-config): Snakemake's `validate` with set_default=True, so the schema's defaults are filled in,
    in place, exactly as Snakemake does. Its error (jsonschema's message followed by the whole schema) becomes
    one ConfigError line naming the key, where it is and, for an unknown key, the closest allowed names
    (difflib); the error's `keys` attribute is the path to the key, for a file:line."""
    from jsonschema import ValidationError
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, str(schema_file()), set_default=True)
    except WorkflowError as exc:
        error = exc.__context__  # validate raises WorkflowError("Error validating config file.", e) within `except`
        if not isinstance(error, ValidationError):
            raise ConfigError(f"invalid config: {str(exc).strip().splitlines()[0]}") from None
        message, keys = _schema_error(error)
        err = ConfigError(message)
        err.keys = keys
        raise err from None


def _dotted(keys) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")


def _schema_error(error) -> tuple[str, list]:
    """One line for a jsonschema ValidationError, and the path to the key it is about."""
    import difflib

    keys = list(error.absolute_path)
    where = f"in {_dotted(keys)}" if keys else "at the top level"
    instance, schema = error.instance, error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema.get("properties", {}))
        unknown = [k for k in instance if k not in allowed]
        close = difflib.get_close_matches(str(unknown[0]), allowed, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        also = f" (also unknown there: {', '.join(repr(k) for k in unknown[1:])})" if unknown[1:] else ""
        return (f"unknown key {unknown[0]!r} {where}: {hint}allowed there: {', '.join(allowed)}{also}",
                keys + [unknown[0]])
    if error.validator == "required" and isinstance(instance, dict):
        missing = [k for k in error.validator_value if k not in instance]
        return f"missing key {', '.join(repr(k) for k in missing)} {where}", keys
    if error.validator == "enum" and isinstance(instance, str):
        allowed = [str(v) for v in error.validator_value]
        close = difflib.get_close_matches(instance, allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{_dotted(keys)}: {instance!r} is not allowed{hint} allowed: {', '.join(allowed)}", keys
    message = error.message if len(error.message) <= 200 else error.message[:200] + " ..."
    if error.validator in ("oneOf", "anyOf") and schema.get("description"):
        message = f"{message} ({schema['description']})"
    return f"{_dotted(keys) or 'config'}: {message}", keys


def _key_line(text: str, keys: list) -> int | None:
    """The line (1-based) of the deepest of `keys` found in a YAML text, or None."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for key in keys:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(key)),
                        None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _unique_key_loader():
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """PyYAML keeps the last of two equal keys silently; a config with one is refused, at its line."""

        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:  # the mapping's own keys; merged ones (<<: *x) may be overridden
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {seen[key] + 1}): PyYAML would keep "
                        "only the last", key_node.start_mark)
                seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def tuning_seeds(config: dict) -> list[int]:
    return list(config["seeds"]["tuning"])


def evaluation_seeds(config: dict) -> list[int]:
    return list(config["seeds"]["evaluation"])


def method_grid(mcfg: dict) -> list[tuple[float, tuple[tuple[str, object], ...]]]:
    """A method's settings: [(strength, ((tuned parameter, value), ...))], strengths times the grid."""
    grid = mcfg.get("grid") or {}
    names = sorted(grid)
    return [(float(s), tuple(zip(names, values)))
            for s in mcfg["strengths"] for values in itertools.product(*(grid[n] for n in names))]


def method_variants(mcfg: dict) -> list[dict]:
    """A method's fixed parameters, once per combination of its `variants` (each its own selection
    group: e.g. best-of-N at several N, a compute axis that is not tuned)."""
    variants = mcfg.get("variants") or {}
    names = sorted(variants)
    return [dict(mcfg.get("params") or {}) | dict(zip(names, values))
            for values in itertools.product(*(variants[n] for n in names))]
