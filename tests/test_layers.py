"""The direction of imports between the project's layers (README, "How the code is organised").

Every import statement of the product code is read (also those inside functions), so a lazy import that
runs back up the layers fails here as well."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("util", "data", "models", "options")
COMMAND_SCRIPTS = ("train", "train_phase", "test", "test_phase")

# Bottom to top: a module may import its own layer and the layers below it.
LAYERS = (
    ("foundation", ("util.core",)),
    ("data", ("data",)),
    ("models", ("models",)),
    ("metrics", ("util.metrics",)),
    ("options", ("options",)),
    ("commands", COMMAND_SCRIPTS + ("util",)),
)


def product_modules():
    """{dotted module name: path} of every product module."""
    found = {name: os.path.join(ROOT, name + ".py") for name in COMMAND_SCRIPTS}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for file in files:
                if file.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, file), ROOT)[:-3].split(os.sep)
                    if rel[-1] == "__init__":
                        rel = rel[:-1]
                    found[".".join(rel)] = os.path.join(folder, file)
    return found


MODULES = product_modules()


def layer_of(module):
    """(index, name) of the layer that owns ``module``: the longest matching prefix."""
    best = None
    for index, (name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[2]:
                    best = (index, name, len(prefix))
    assert best is not None, f"{module} belongs to no layer"
    return best[:2]


def imported_modules(path, module):
    """The project modules that ``path`` imports (``from pkg import mod`` counts as importing pkg.mod)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    is_package = path.endswith("__init__.py")
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[:len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(parts + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n in MODULES and n != module}


def is_command(module):
    return module in COMMAND_SCRIPTS or (module.startswith("util.") and module.count(".") == 1
                                         and not MODULES[module].endswith("__init__.py"))


def test_every_product_module_belongs_to_a_layer():
    assert {"util.core.checkpoint", "util.metrics.fid_stats", "models.generation", "util.fid",
            "util.merge_ckpt"} <= set(MODULES)
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_downwards_only(module):
    index, name = layer_of(module)
    upward = sorted(f"{other} ({layer_of(other)[1]})" for other in imported_modules(MODULES[module], module)
                    if layer_of(other)[0] > index)
    assert not upward, f"{module} ({name} layer) imports a higher layer: {', '.join(upward)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if is_command(m)))
def test_commands_use_libraries_not_other_commands(module):
    others = sorted(m for m in imported_modules(MODULES[module], module) if is_command(m))
    assert not others, f"command {module} imports the commands {', '.join(others)}"


def test_util_top_level_holds_commands_only():
    """Every module directly in util/ runs as a command; the libraries live in util.core and util.metrics."""
    for module in MODULES:
        if is_command(module) and module.startswith("util."):
            source = open(MODULES[module], encoding="utf-8").read()
            assert 'if __name__ == "__main__":' in source and "def main(" in source, module


def test_libraries_hold_no_command():
    for module, path in MODULES.items():
        if not is_command(module) and module != "util":
            assert 'if __name__ == "__main__":' not in open(path, encoding="utf-8").read(), module


def test_data_does_not_import_jittor_except_the_datasets():
    for module, path in MODULES.items():
        if layer_of(module)[1] == "data" and module != "data.datasets":
            tree = ast.parse(open(path, encoding="utf-8").read(), path)
            imports = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            imports |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
            assert "jittor" not in imports, module
