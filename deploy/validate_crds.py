#!/usr/bin/env python3
"""Validates custom resources against the openAPIV3Schema of their CustomResourceDefinitions,
strictly (an unknown field is an error, as `kubectl apply --validate=strict` makes it).

Usage: validate_crds.py CRD_DIR OBJECT.yaml...
Objects whose kind has no CRD in CRD_DIR are listed as not checked. CEL rules
(x-kubernetes-validations) are not evaluated.
"""
import glob
import os
import sys

import jsonschema
import yaml


def strict(schema):
    """Unknown fields are errors unless the schema keeps them (preserve-unknown-fields)."""
    if isinstance(schema, dict):
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def main():
    crd_dir, files = sys.argv[1], sys.argv[2:]
    schemas = {}
    for path in glob.glob(os.path.join(crd_dir, "*.yaml")):
        for crd in yaml.safe_load_all(open(path)):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = strict(version["schema"]["openAPIV3Schema"])
                # metadata is the API server's: only its type is checked here.
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                schemas[(f"{group}/{version['name']}", kind)] = schema
    failed = checked = 0
    skipped = []
    for path in files:
        for obj in yaml.safe_load_all(open(path)):
            if not obj:
                continue
            schema = schemas.get((obj["apiVersion"], obj["kind"]))
            name = f"{obj['apiVersion']} {obj['kind']}/{obj['metadata']['name']}"
            if schema is None:
                skipped.append(name)
                continue
            checked += 1
            for error in jsonschema.Draft7Validator(schema).iter_errors(obj):
                failed += 1
                where = ".".join(str(p) for p in error.absolute_path) or "(root)"
                print(f"validate_crds: {name}: {where}: {error.message}")
    print(f"validate_crds: {checked} checked against their CRDs, {failed} errors"
          + (f"; no CRD schema here for: {', '.join(skipped)}" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
