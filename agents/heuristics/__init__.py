"""Heuristics and oracles of every environment, one module per environment; importing this
package imports them all, and each registers its policies by ``--policy`` name."""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
