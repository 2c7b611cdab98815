"""The one exception the workload layer raises for bad traces, files and parameters."""

from __future__ import annotations


class TraceError(ValueError):
    """Bad trace data or parameters; the message names the file, row and field where known.

    A subclass of ValueError so that callers who only care about "bad input" need not import it.
    """
