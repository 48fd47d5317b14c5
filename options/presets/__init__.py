"""Recipe presets: JSON files of option defaults, loaded with ``--preset NAME``.

A preset file holds ``{"description": "...", "extends": "OTHER" (optional),
"options": {flag: value, ...}}`` with the option names of train_phase.py.
``extends`` first loads another preset; this file's values win. Values only
become defaults: flags given on the command line override them.
"""

import argparse
import json
import os

from util.core.errors import OptionError

FOLDER = os.path.dirname(os.path.abspath(__file__))


def available():
    return sorted(f[:-5] for f in os.listdir(FOLDER) if f.endswith(".json"))


def path_of(name):
    """Path of preset ``name`` (a shipped name, or a path to a .json file)."""
    if name.endswith(".json") or os.sep in name:
        return name
    return os.path.join(FOLDER, name + ".json")


def requested(argv):
    """The --preset value in ``argv``, or None."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--preset", default=None)
    known, _ = probe.parse_known_args(argv)
    return known.preset


def read(name, _seen=()):
    """The option values of preset ``name`` with its ``extends`` chain resolved."""
    path = path_of(name)
    if not os.path.isfile(path):
        raise OptionError(f"--preset {name}: {path} does not exist; shipped presets: {', '.join(available())}.")
    if path in _seen:
        raise OptionError(f"{path}: 'extends' chain loops back to itself.")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise OptionError(f"{path}: not a readable preset ({err}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("options"), dict):
        raise OptionError(f"{path}: a preset is a JSON object with an 'options' object.")
    values = {}
    if data.get("extends"):
        values.update(read(data["extends"], _seen + (path,)))
    values.update(data["options"])
    return values


def load(name, parser):
    """Values of preset ``name`` checked against ``parser``'s options, ready for ``set_defaults``."""
    values = read(name)
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    unknown = sorted(k for k in values if k not in actions)
    if unknown:
        raise OptionError(f"{path_of(name)}: unknown option(s) {', '.join(unknown)}.")
    checked = {}
    for key, value in values.items():
        action = actions[key]
        if action.type is not None and value is not None:
            try:
                value = action.type(str(value))
            except (argparse.ArgumentTypeError, ValueError) as err:
                raise OptionError(f"{path_of(name)}: {key}: {err}") from None
        if action.choices is not None and value not in action.choices:
            raise OptionError(f"{path_of(name)}: {key} {value!r} is not one of {', '.join(map(str, action.choices))}.")
        checked[key] = value
    return checked
