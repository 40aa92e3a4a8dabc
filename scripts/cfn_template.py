"""infra/template.yaml as the scripts read it: one reader, so that the state-machine
check and the Lambda cold-start measurement cannot disagree on what the template gives
a function (the Rust tests read it with d2serve_registry::testing::template_env).
"""
import os
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, ...) kept as {"!Tag": value}."""


def _tagged(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"!" + suffix: value}


CfnLoader.add_multi_constructor("!", _tagged)


def template():
    with open(os.path.join(REPO, "infra/template.yaml")) as f:
        return yaml.load(f, Loader=CfnLoader)


def function_env(tpl, resource, given):
    """The function's Environment.Variables as the template sets them; computed ones from `given`."""
    out = {}
    for k, v in tpl["Resources"][resource]["Properties"]["Environment"]["Variables"].items():
        if k in given:
            out[k] = given[k]
        elif isinstance(v, dict):
            sys.exit(f"infra/template.yaml computes {k} for {resource} ({v}): give this script its value")
        else:
            out[k] = str(v)
    return out


def function_property(tpl, resource, name):
    """A scalar property of the function (MemorySize, Timeout); `!Ref Parameter` read as the parameter's Default."""
    v = tpl["Resources"][resource]["Properties"][name]
    if isinstance(v, dict) and "!Ref" in v:
        v = tpl["Parameters"][v["!Ref"]]["Default"]
    return str(v)
