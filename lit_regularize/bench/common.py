"""What every bench section shares: min/median of repeated timings and the one-line machine description."""
from __future__ import annotations

import platform
import statistics
from typing import Any, Callable, Sequence

Progress = Callable[[str], None]  # where sections write their "timing X ..." lines


def spread(values: Sequence[float], key: str) -> dict[str, Any]:
    """{key: values, min_<key>: ..., median_<key>: ...}, the two statistics every table reports."""
    values = [float(v) for v in values]
    return {key: values, f"min_{key}": min(values), f"median_{key}": statistics.median(values)}


def machine() -> str:
    """One line naming the machine the tables were measured on."""
    import torch

    from lit_regularize.sweep.workers import usable_cpus  # the cores sweep workers split, as counted there

    return (f"{platform.processor() or platform.machine()}, {usable_cpus()} CPU cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, Python {platform.python_version()}")


__all__ = ["Progress", "spread", "machine"]
