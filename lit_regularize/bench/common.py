"""What every bench section shares: min/median of repeated timings and the one-line machine description."""
from __future__ import annotations

import platform
import statistics
from pathlib import Path
from typing import Any, Callable, Sequence

from lit_regularize.errors import UserError

Progress = Callable[[str], None]  # where sections write their "timing X ..." lines


def spread(values: Sequence[float], key: str) -> dict[str, Any]:
    """{key: values, min_<key>: ..., median_<key>: ...}, the two statistics every table reports."""
    values = [float(v) for v in values]
    return {key: values, f"min_{key}": min(values), f"median_{key}": statistics.median(values)}


def require(data_dir: str, name: str, folder: bool = False) -> None:
    """A section's data under --data-dir (a file, or a folder) must be there before anything is timed."""
    p = Path(data_dir) / name
    if not (p.is_dir() if folder else p.is_file()):
        raise UserError(f"--data-dir {data_dir}: no {name} there")


def machine() -> str:
    """One line naming the machine the tables were measured on."""
    import torch

    from lit_regularize.sweeps.workers import usable_cpus  # the cores sweep workers split, as counted there

    return (f"{platform.processor() or platform.machine()}, {usable_cpus()} CPU cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, Python {platform.python_version()}")


__all__ = ["Progress", "require", "spread", "machine"]
