#!/usr/bin/env python3
"""Validates custom resources against the openAPIV3Schema of their CustomResourceDefinitions,
strictly, as an API server with `kubectl apply --validate=strict` would:

- an unknown field is an error (unless the schema keeps unknown fields,
  x-kubernetes-preserve-unknown-fields), and so is a missing required field;
- the apiVersion must be one the CRD serves (a Kafka in kafka.strimzi.io/v1beta2 is refused when
  the vendored CRD serves only v1);
- a kind of a vendored group without a vendored CRD is an error, not a skip: every object handed
  here is checked or refused;
- the CEL rules (x-kubernetes-validations) of every schema node the object has are evaluated
  (cel-python); transition rules (those reading oldSelf) need the stored object and are skipped.

Usage: validate_crds.py CRD_DIR OBJECTS.yaml...
CRD_DIR is searched recursively for CustomResourceDefinitions (deploy/crds/, vendored from the
operators' packages; see its README.md). String formats are not checked; metadata is the API
server's and only needs a name here.
"""
import glob
import os
import sys
from dataclasses import dataclass, field

import celpy
import jsonschema
import yaml

# libyaml's parser when PyYAML has it: the Cluster CRD alone is 440 kB.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class CrdVersions:
    """One kind's CustomResourceDefinition, by version."""

    #: where the CRD was read from, for messages
    path: str
    #: the strict schema of each version the CRD serves
    served: dict = field(default_factory=dict)
    #: versions the CRD declares but does not serve
    unserved: list = field(default_factory=list)


def strict(schema):
    """Refuses unknown fields below every object schema that lists its properties.

    Only the structural part is walked (properties, items, additionalProperties): a properties
    list inside anyOf/allOf/oneOf only constrains values and must not close the object.
    """
    if not isinstance(schema, dict):
        return schema
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        schema["additionalProperties"] = False
    for child in schema.get("properties", {}).values():
        strict(child)
    for key in ("items", "additionalProperties"):
        strict(schema.get(key))
    return schema


def load_crds(crd_dir):
    """Every CRD under crd_dir, keyed by (group, kind)."""
    crds = {}
    paths = sorted(glob.glob(os.path.join(crd_dir, "**", "*.yaml"), recursive=True))
    for path in paths:
        with open(path) as f:
            documents = list(yaml.load_all(f, Loader=LOADER))
        for crd in documents:
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            entry = crds.setdefault((spec["group"], spec["names"]["kind"]), CrdVersions(path))
            for version in spec["versions"]:
                if not version.get("served", True):
                    entry.unserved.append(version["name"])
                    continue
                schema = strict(version["schema"]["openAPIV3Schema"])
                schema.setdefault("properties", {})["metadata"] = {
                    "type": "object", "required": ["name"],
                    "properties": {"name": {"type": "string", "minLength": 1}},
                }
                schema.setdefault("required", [])
                for required in ("apiVersion", "kind", "metadata"):
                    if required not in schema["required"]:
                        schema["required"].append(required)
                entry.served[version["name"]] = schema
    return crds


def cel_errors(value, schema, path, env):
    """The CEL rules of schema (and of its children that value has) that value breaks."""
    if not isinstance(schema, dict):
        return []
    errors = []
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"]:
            continue
        try:
            program = env.program(env.compile(rule["rule"]))
            result = program.evaluate({"self": celpy.json_to_cel(value)})
        except (celpy.CELParseError, celpy.CELEvalError) as error:
            result = error
        if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and result):
            why = rule.get("message") or f"rule {rule['rule']}"
            detail = "" if isinstance(result, celpy.celtypes.BoolType) else f" (not evaluated: {result})"
            errors.append(f"{'.'.join(path) or '(root)'}: {why}{detail}")
    children = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        children = [(key, child, properties.get(key, extra)) for key, child in value.items()]
    elif isinstance(value, list):
        children = [(str(i), child, schema.get("items")) for i, child in enumerate(value)]
    for key, child, child_schema in children:
        errors.extend(cel_errors(child, child_schema, path + [key], env))
    return errors


def object_errors(obj, crds):
    """The problems of one custom resource, as messages (empty when it is valid)."""
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    group, _, version = api_version.rpartition("/")
    entry = crds.get((group, kind))
    if entry is None:
        return [f"no CRD for {kind} in {group or '(no group)'} under the vendored CRDs"]
    schema = entry.served.get(version)
    if schema is None:
        unserved = f"; {', '.join(entry.unserved)} no longer" if entry.unserved else ""
        return [f"{api_version} is not served by the CRD ({os.path.basename(entry.path)} serves "
                f"{', '.join(sorted(entry.served)) or 'nothing'}{unserved})"]
    errors = []
    for error in jsonschema.Draft7Validator(schema).iter_errors(obj):
        where = ".".join(str(p) for p in error.absolute_path) or "(root)"
        errors.append(f"{where}: {error.message}")
    return errors + cel_errors(obj, schema, [], celpy.Environment())


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    crds = load_crds(sys.argv[1])
    if not crds:
        print(f"validate_crds: no CustomResourceDefinition under {sys.argv[1]}", file=sys.stderr)
        return 2
    failed = checked = 0
    kinds = set()
    for path in sys.argv[2:]:
        with open(path) as f:
            objects = [o for o in yaml.load_all(f, Loader=LOADER) if o]
        for obj in objects:
            name = (f"{obj.get('apiVersion')} {obj.get('kind')}/"
                    f"{(obj.get('metadata') or {}).get('name')}")
            checked += 1
            kinds.add(str(obj.get("kind")))
            for message in object_errors(obj, crds):
                failed += 1
                print(f"validate_crds: {name}: {message}")
    print(f"validate_crds: {checked} objects ({', '.join(sorted(kinds))}) checked against "
          f"{len(crds)} vendored CRDs, {failed} errors")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
