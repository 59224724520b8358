#!/usr/bin/env python3
"""Validates custom objects against their CRD's openAPIV3Schema, as strictly
as the API server's strict field validation (`kubectl apply
--validate=strict`, the default) does: a field the schema does not declare is
an error, not silently pruned.

    validate-crd-objects.py CRD.yaml OBJECTS.yaml...

Prints one JSON report on stdout: a list with one entry per YAML document,
{"file", "document", "name", "errors": ["<field path>: <message>", ...]}.
Exits 0 when every file could be read (whatever the verdicts), 2 when the
CRD or an objects file cannot be used at all.

What it checks: apiVersion and kind against the CRD, metadata.name, the
object against the served version's schema with `nullable` honoured and
additionalProperties: false added wherever a schema lists properties and
does not say x-kubernetes-preserve-unknown-fields, and the CEL rules
(x-kubernetes-validations) with cel-python, each with `self` bound to the
value at its schema node as the API server binds it (RE2 for `matches`, as
there). A rule's error is reported as `<field path><fieldPath>: <message>`.
What it does not: formats, the Kubernetes CEL extension libraries (a rule
using them fails here), and the rules' cost, which only the API server
estimates. The other x-kubernetes-* keywords mean nothing to jsonschema,
which ignores them.
"""

import copy
import json
import sys

import jsonschema
import yaml

try:
    import celpy
except ImportError:  # reported by main(): the CEL rules cannot be checked
    celpy = None


def strict(schema):
    """A copy of an OpenAPI v3 structural schema as strict JSON Schema."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        if node.get("nullable") is True and "type" in node:
            node["type"] = [node["type"], "null"]
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for key, value in node.items():
            if key == "properties":
                for sub in value.values():
                    walk(sub)
            elif key in ("items", "additionalProperties", "not"):
                walk(value)
            elif key in ("allOf", "anyOf", "oneOf"):
                walk(value)

    walk(schema)
    return schema


def root_schema(version_schema):
    """The object's schema: the version's, plus the fields every object has."""
    schema = copy.deepcopy(version_schema)
    properties = schema.setdefault("properties", {})
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    properties["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1}},
        # Labels, annotations and the rest are the API server's own schema.
        "x-kubernetes-preserve-unknown-fields": True,
    }
    return strict(schema)


def load_crd(path):
    """The CRD's kind and, per served apiVersion, (strict schema, schema as written)."""
    with open(path, encoding="utf-8") as f:
        crd = yaml.safe_load(f)
    if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
        raise ValueError(f"{path} is not a CustomResourceDefinition")
    spec = crd["spec"]
    versions = {}
    for version in spec["versions"]:
        schema = version.get("schema", {}).get("openAPIV3Schema")
        if schema is None:
            raise ValueError(f"{path}: version {version['name']} has no openAPIV3Schema")
        versions[f"{spec['group']}/{version['name']}"] = (root_schema(schema), schema)
    return spec["names"]["kind"], versions


def dotted(path):
    return ".".join(str(p) for p in path) or "(object)"


def field_path(error):
    return dotted(error.absolute_path)


class Rules:
    """The CEL rules of a CRD, each compiled once."""

    def __init__(self):
        self.env = celpy.Environment()
        self.programs = {}

    def program(self, rule):
        """`rule` compiled (raising celpy.CELParseError if it does not parse)."""
        program = self.programs.get(rule)
        if program is None:
            program = self.env.program(self.env.compile(rule))
            self.programs[rule] = program
        return program

    def holds(self, rule, value):
        """None when `rule` admits `value`, else why not (False or the error)."""
        try:
            verdict = self.program(rule).evaluate({"self": celpy.json_to_cel(value)})
        except celpy.CELEvalError as e:
            return str(e)
        if isinstance(verdict, celpy.CELEvalError):
            return str(verdict)
        if not isinstance(verdict, celpy.celtypes.BoolType):
            return f"the rule gave {verdict!r}, not a bool"
        return None if verdict else False

    def errors(self, schema, value, path=()):
        """Each rule at each node the value reaches that refuses its value there."""
        found = []
        if not isinstance(schema, dict):
            return found
        for rule in schema.get("x-kubernetes-validations", []):
            why = self.holds(rule["rule"], value)
            if why is None:
                continue
            message = rule.get("message", f"failed rule: {rule['rule']}")
            if why is not False:
                message = f"{message} ({why})"
            found.append(f"{dotted(path)}{rule.get('fieldPath', '')}: {message}")
        if isinstance(value, dict):
            properties = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for key, sub in value.items():
                sub_schema = properties.get(key, extra if isinstance(extra, dict) else None)
                if sub_schema is not None:
                    found += self.errors(sub_schema, sub, path + (key,))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                found += self.errors(schema.get("items"), item, path + (i,))
        return found


def compile_all(rules, schema):
    """Compiles every rule below `schema` (raising on one that does not parse)."""
    if isinstance(schema, dict):
        for rule in schema.get("x-kubernetes-validations", []):
            rules.program(rule["rule"])
        for key in ("items", "additionalProperties"):
            compile_all(rules, schema.get(key))
        for sub in schema.get("properties", {}).values():
            compile_all(rules, sub)


def check(kind, versions, rules, obj):
    if not isinstance(obj, dict):
        return [f"(object): a {kind} is a mapping, not {type(obj).__name__}"]
    if obj.get("kind") != kind:
        return [f"kind: {obj.get('kind')!r} is not {kind!r}"]
    schemas = versions.get(obj.get("apiVersion"))
    if schemas is None:
        served = ", ".join(sorted(versions))
        return [f"apiVersion: {obj.get('apiVersion')!r} is not served (served: {served})"]
    schema, written = schemas
    validator = jsonschema.Draft4Validator(schema)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{field_path(e)}: {e.message}" for e in errors] + rules.errors(written, obj)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    if celpy is None:
        print(
            "cel-python is missing, so the CEL rules cannot be checked: "
            "bash .ci/install-test-tools.sh installs it",
            file=sys.stderr,
        )
        return 2
    rules = Rules()
    try:
        kind, versions = load_crd(argv[1])
        # Every rule must compile: one that does not is the CRD's error.
        for _, written in versions.values():
            compile_all(rules, written)
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as e:
        print(f"cannot use the CRD {argv[1]}: {e}", file=sys.stderr)
        return 2
    except celpy.CELParseError as e:
        print(f"cannot use the CRD {argv[1]}: a CEL rule does not parse: {e}", file=sys.stderr)
        return 2
    report = []
    for path in argv[2:]:
        try:
            with open(path, encoding="utf-8") as f:
                documents = [d for d in yaml.safe_load_all(f) if d is not None]
        except (OSError, yaml.YAMLError) as e:
            print(f"cannot read {path}: {e}", file=sys.stderr)
            return 2
        for index, obj in enumerate(documents):
            name = obj.get("metadata", {}).get("name") if isinstance(obj, dict) else None
            report.append(
                {
                    "file": path,
                    "document": index,
                    "name": name,
                    "errors": check(kind, versions, rules, obj),
                }
            )
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
