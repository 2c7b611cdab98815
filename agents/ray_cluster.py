"""Ray as servegym's one distributed engine: start it embedded or join a cluster.

Locally nothing is started by hand: ``connect(None)`` runs ``ray.init`` with this machine's cores
(or ``num_cpus``). On a cluster started with ``ray start --head`` / ``ray start --address
HEAD:6379`` (README, "Scale out on Ray"), ``connect("auto")`` or ``connect("HEAD:6379")`` joins
it. Every node needs the same servegym checkout (and ``../shared/traces``) at the same path.
"""

from __future__ import annotations

import logging
import os
from typing import Any

INSTALL_HINT = "pip install -e '.[ray]' (ray[tune] and optuna)"


def require_ray() -> Any:
    """The ``ray`` module, or ``SystemExit`` with one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SystemExit(f"error: Ray is not installed; {INSTALL_HINT}") from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> dict[str, Any]:
    """Start Ray embedded (``address`` None: ``num_cpus`` or all of this machine's cores) or
    join the cluster at ``address`` (``auto`` or ``HOST:PORT``). A Ray already initialised in
    this process (a test fixture, a notebook) is used as it is. Returns the cluster's resources
    (``{"CPU": n, ...}``). Raises ``SystemExit`` with one line when no cluster answers at
    ``address`` or ``num_cpus`` is not positive."""
    ray = require_ray()
    if num_cpus is not None and num_cpus < 1:
        raise SystemExit(f"error: --num-cpus must be >= 1, got {num_cpus}")
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "include_dashboard": False}
        if address:
            if num_cpus is not None:
                raise SystemExit("error: --num-cpus applies to the embedded Ray only; a cluster "
                                 "has the CPUs its nodes were started with")
            try:
                ray.init(address=address, logging_level=logging.WARNING)
            except ConnectionError as err:
                raise SystemExit(f"error: --address {address}: no Ray cluster answered ({err})") from None
        else:
            # Ray lowers its workers' priority by 15 (worker_niceness) to keep its own daemons
            # responsive; here the workers do all the work, so they keep the driver's priority
            # (on a busy machine the default starves them). RAY_worker_niceness set by the user wins.
            os.environ.setdefault("RAY_worker_niceness", "0")
            # address="local": always a fresh embedded instance, even with RAY_ADDRESS set.
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)
    return dict(ray.cluster_resources())


__all__ = ["INSTALL_HINT", "connect", "require_ray"]
