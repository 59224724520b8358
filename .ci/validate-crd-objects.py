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

What it checks: apiVersion and kind against the CRD, metadata.name, and the
object against the served version's schema with `nullable` honoured and
additionalProperties: false added wherever a schema lists properties and
does not say x-kubernetes-preserve-unknown-fields. What it does not: CEL
rules (x-kubernetes-validations) and formats, which only the API server
evaluates.
"""

import copy
import json
import sys

import jsonschema
import yaml


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
        versions[f"{spec['group']}/{version['name']}"] = root_schema(schema)
    return spec["names"]["kind"], versions


def field_path(error):
    return ".".join(str(p) for p in error.absolute_path) or "(object)"


def check(kind, versions, obj):
    if not isinstance(obj, dict):
        return [f"(object): a {kind} is a mapping, not {type(obj).__name__}"]
    if obj.get("kind") != kind:
        return [f"kind: {obj.get('kind')!r} is not {kind!r}"]
    schema = versions.get(obj.get("apiVersion"))
    if schema is None:
        served = ", ".join(sorted(versions))
        return [f"apiVersion: {obj.get('apiVersion')!r} is not served (served: {served})"]
    validator = jsonschema.Draft4Validator(schema)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{field_path(e)}: {e.message}" for e in errors]


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        kind, versions = load_crd(argv[1])
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as e:
        print(f"cannot use the CRD {argv[1]}: {e}", file=sys.stderr)
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
                    "errors": check(kind, versions, obj),
                }
            )
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
