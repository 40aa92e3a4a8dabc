#!/usr/bin/env python3
"""Expand a SAM template into plain CloudFormation, offline, so cfn-lint checks
what SAM generates (roles, Function URL, Scheduler schedule) with the full
CloudFormation schemas; cfn-lint alone checks SAM resources only loosely.
Also checks that every state-machine transition names a state, at every
nesting level (a Distributed Map's ItemProcessor included).

usage: sam-to-cfn.py TEMPLATE OUT.json
"""
import json
import sys

import boto3
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse


def asl_errors(machine: dict, where: str) -> list:
    """Transitions that name no state, at every nesting level (cfn-lint checks the top level only)."""
    errors = []
    states = machine.get("States", {})
    targets = [("StartAt", machine.get("StartAt"))]
    for name, st in states.items():
        targets += [(f"{name}.Next", st.get("Next")), (f"{name}.Default", st.get("Default"))]
        targets += [(f"{name}.Choices.Next", c.get("Next")) for c in st.get("Choices", [])]
        targets += [(f"{name}.Catch.Next", c.get("Next")) for c in st.get("Catch", [])]
        for sub in ("ItemProcessor", "Iterator"):
            if sub in st:
                errors += asl_errors(st[sub], f"{where}.{name}.{sub}")
        for i, branch in enumerate(st.get("Branches", [])):
            errors += asl_errors(branch, f"{where}.{name}.Branches[{i}]")
    for field, target in targets:
        if target is not None and target not in states:
            errors.append(f"{where}: {field} names `{target}`, which is not a state here")
    return errors


class NoManagedPolicies:
    """The template names no AWS managed policies, so nothing needs looking up (and nothing leaves this machine)."""

    def load(self):
        return {}


def main() -> int:
    src, out = sys.argv[1], sys.argv[2]
    with open(src) as f:
        template = yaml_parse(f.read())
    errors = []
    for name, res in template.get("Resources", {}).items():
        definition = res.get("Properties", {}).get("Definition")
        if isinstance(definition, dict):
            errors += asl_errors(definition, name)
    for e in errors:
        print(f"{src}: {e}", file=sys.stderr)
    if errors:
        return 2
    # `sam build` fills ImageUri of functions built from Metadata.Dockerfile; do the same.
    for name, res in template.get("Resources", {}).items():
        props = res.get("Properties", {})
        if res.get("Type") == "AWS::Serverless::Function" and props.get("PackageType") == "Image":
            if "ImageUri" not in props and "Dockerfile" in res.get("Metadata", {}):
                props["ImageUri"] = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{name.lower()}:lint"
    # The session gives the region and partition only; no call is made.
    session = boto3.session.Session(region_name="us-east-1")
    try:
        cfn = Translator(None, Parser(), boto_session=session).translate(
            template, parameter_values={}, get_managed_policy_map=NoManagedPolicies().load
        )
    except InvalidDocumentException as e:
        for cause in e.causes:
            print(f"{src}: SAM: {cause.message}", file=sys.stderr)
        return 2
    with open(out, "w") as f:
        json.dump(cfn, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
