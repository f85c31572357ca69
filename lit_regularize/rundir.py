"""RunDir: the one owner of a run folder — claimed exclusively, locked while a process trains in it, written
atomically, reopened by --resume.

<logdir>/<name>/version_<k>/
    config.yaml        the resolved Config
    split.npz          the example ids that trained and validated (and test_idx: an own dataset's held-out rows)
    classes.json, ...  own data only: what predict needs to encode new inputs (DataModule.artifacts())
    summary.json       RunSummary (status running -> completed | interrupted | failed)
    checkpoints/       best-epochNNN.ckpt (1-based epoch of the lowest val/loss) and last.ckpt
    hparams.yaml, events.out.tfevents.*   (TensorBoard)
"""
from __future__ import annotations

import errno
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping, Optional

from lit_regularize.config import Config, resumable, config_from_file, flag, to_yaml
from lit_regularize.errors import ConfigError, DataError, UserError
from lit_regularize.files import atomic_write, read_json, read_own_yaml, write_json
from lit_regularize.summary import SUMMARY, RunSummary
from lit_regularize.writable import check_writable

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not locked
    fcntl = None  # type: ignore[assignment]

CONFIG, SPLIT, CHECKPOINTS, LAST = "config.yaml", "split.npz", "checkpoints", "last.ckpt"
BEST_PATTERN = re.compile(r"^best-epoch(\d+)\.ckpt$")
MAX_CLAIM_TRIES = 1000


class RunDir:
    """A run folder; create one with `claim` (new run) or `open` (resume)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).absolute()
        self._lock_fd: Optional[int] = None

    # -- creating and opening ----------------------------------------------------------------------------
    @classmethod
    def claim(cls, logdir: str | os.PathLike, name: str) -> "RunDir":
        """Create the next free version_<k> under logdir/name exclusively: two runs started at once never share."""
        root = Path(logdir).expanduser() / name
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"--logdir {logdir}: cannot create the run folder {root} ({e.strerror})") from None
        if not root.is_dir():
            raise UserError(f"--logdir {logdir}: {root} exists and is not a folder")
        k = next_version(root)
        for _ in range(MAX_CLAIM_TRIES):
            try:
                (root / f"version_{k}").mkdir()  # atomic: exactly one process succeeds for a given k
                return cls(root / f"version_{k}")
            except FileExistsError:
                k += 1
            except OSError as e:
                raise UserError(f"--logdir {logdir}: cannot create a run folder in {root} ({e.strerror})") from None
        raise UserError(f"--logdir {logdir}: no free version folder in {root}")

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunDir":
        """An existing run folder to resume: it must hold config.yaml and a readable checkpoints/last.ckpt."""
        d = cls(Path(path).expanduser())
        if not d.path.is_dir():
            raise UserError(f"--resume {path}: not a folder")
        if not (d.path / CONFIG).is_file():
            raise UserError(f"--resume {path}: no {CONFIG} here; is this a run folder (…/version_<k>)?")
        if not d.last_checkpoint.is_file():
            try:
                finished = (d.read_summary() or RunSummary()).epochs_run
            except (OSError, ValueError, TypeError):
                finished = 0
            why = (f"it finished {finished} epoch(s) but kept only its best checkpoint, as sweep trials do"
                   if finished else "the run stopped inside its first epoch")
            raise UserError(f"--resume {path}: no {CHECKPOINTS}/{LAST} to resume from ({why}; start it again)")
        if not zipfile.is_zipfile(d.last_checkpoint):  # torch.save writes a zip archive; anything else is damaged
            raise UserError(f"--resume {path}: {CHECKPOINTS}/{LAST} is damaged (not a complete checkpoint); "
                            "start the run again")
        return d

    # -- exclusive use ------------------------------------------------------------------------------------
    def lock(self) -> "RunDir":
        """Hold the folder exclusively (an OS lock on it) until unlock(): a second run or --resume of it is one
        error line. The lock dies with its process, so a crashed or killed run never blocks a resume."""
        if fcntl is None or self._lock_fd is not None:
            return self
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))  # not inherited by subprocesses
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise UserError(f"{self.path} is in use: another process is training in this run folder (the run "
                                "itself or a --resume of it); let it finish or stop it, then resume") from None
            return self  # a file system without locks (some network mounts): go on, as before locks existed
        self._lock_fd = fd
        return self

    @property
    def locked(self) -> bool:
        """Whether this object holds lock()."""
        return self._lock_fd is not None

    def unlock(self) -> None:
        """Release lock() (a no-op when not held)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the last descriptor releases the flock
            self._lock_fd = None

    def check_writable(self) -> None:
        """A resume writes checkpoints, logs and summary.json here: a read-only folder is one line up front."""
        for folder in (self.path, self.checkpoint_dir):
            check_writable(folder, "--resume")

    @staticmethod
    def latest(logdir: str | os.PathLike, name: str) -> "RunDir":
        """The newest version_<k> of a run name (for a bare --resume)."""
        root = Path(logdir) / name
        versions = version_numbers(root)
        if not versions:
            raise UserError(f"--resume: no runs under {root}")
        return RunDir.open(root / f"version_{max(versions)}")

    # -- contents ----------------------------------------------------------------------------------------
    @property
    def version(self) -> Optional[int]:
        """k of version_<k> (None for a folder named otherwise)."""
        m = re.fullmatch(r"version_(\d+)", self.path.name)
        return int(m.group(1)) if m else None

    @property
    def checkpoint_dir(self) -> Path:
        """checkpoints/."""
        return self.path / CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        """checkpoints/last.ckpt."""
        return self.checkpoint_dir / LAST

    def checkpointed_epochs(self) -> int:
        """Epochs last.ckpt holds (a resume trains on from there); 0 without a readable one."""
        import torch

        try:  # mmap: only the header is read, not the weights
            state = torch.load(self.last_checkpoint, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - RunDir.open already refused a missing or damaged last.ckpt
            return 0
        return int(state.get("epoch", -1)) + 1

    def best_checkpoints(self) -> dict[int, Path]:
        """1-based epoch -> best-epochNNN.ckpt present in the folder."""
        out = {}
        if self.checkpoint_dir.is_dir():
            for p in self.checkpoint_dir.iterdir():
                m = BEST_PATTERN.match(p.name)
                if m:
                    out[int(m.group(1))] = p
        return out

    def keep_best(self, epoch: Optional[int]) -> Optional[Path]:
        """The checkpoint of `epoch` (1-based); other best-* files (left by a resume) are removed."""
        found = self.best_checkpoints()
        keep = found.get(epoch) if epoch is not None else None
        if keep is None and epoch is not None:
            keep = self._renamed_old_best(found, epoch)
            found = self.best_checkpoints()
        for p in found.values():
            if p != keep:
                p.unlink(missing_ok=True)
        return keep

    def _renamed_old_best(self, found: dict[int, Path], epoch: int) -> Optional[Path]:
        """A folder written before checkpoint names counted from 1 holds epoch 4's weights as best-epoch003.ckpt:
        find the best-* file whose stored (0-based) epoch is `epoch` - 1 and give it its 1-based name."""
        import torch

        for p in found.values():
            try:
                stored = torch.load(p, map_location="cpu", weights_only=True).get("epoch")
            except Exception:  # noqa: BLE001 - a damaged file is no candidate; keep_best removes it
                continue
            if stored is not None and int(stored) + 1 == epoch:
                target = self.checkpoint_dir / f"best-epoch{epoch:03d}.ckpt"
                p.replace(target)
                return target
        return None

    def rel(self, path: Optional[Path]) -> Optional[str]:
        """path relative to the run folder (what summary.json records)."""
        return None if path is None else os.path.relpath(Path(path).absolute(), self.path)

    # -- files -------------------------------------------------------------------------------------------
    def write_config(self, cfg: Config) -> None:
        """config.yaml: the resolved config (feeds --config and --resume)."""
        text = to_yaml(cfg)
        atomic_write(self.path / CONFIG, lambda f: f.write(text.encode()))

    def read_config(self) -> Config:
        """The saved Config."""
        return config_from_file(self.path / CONFIG)

    def read_settings(self) -> dict[str, Any]:
        """The saved settings as a plain dict, unvalidated (config.yaml, else summary.json's config): what predict
        and export read, so a run folder of an older version (or whose data is gone) still loads."""
        import yaml

        try:
            if (self.path / CONFIG).is_file():
                cfg = read_own_yaml((self.path / CONFIG).read_text())
            elif (self.path / SUMMARY).is_file():
                cfg = read_json(self.path / SUMMARY).get("config")
            else:
                raise UserError(f"{self.path}: no {CONFIG} or {SUMMARY}; "
                                "is it a run folder (<logdir>/<name>/version_k)?")
        except (OSError, ValueError, AttributeError, yaml.YAMLError) as e:
            raise DataError(f"{self.path}: cannot read the run's config ({type(e).__name__})") from None
        if not isinstance(cfg, dict):
            raise DataError(f"{self.path}: the run's config is not a mapping of settings")
        return cfg

    def write_artifacts(self, artifacts: Mapping[str, Any]) -> list[Path]:
        """JSON files (name -> JSON-able content) beside the checkpoints: what encoding new inputs needs."""
        return [write_json(self.path / name, content) for name, content in artifacts.items()]

    def read_artifact(self, name: str) -> Any:
        """A JSON artifact written by write_artifacts; missing or unreadable is one DataError line."""
        p = self.path / name
        if not p.is_file():
            raise DataError(f"{self.path}: no {name} in the run folder (saved at training time; the run is "
                            "incomplete or older than predicting on own data)")
        try:
            return read_json(p)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DataError(f"{p}: not readable JSON ({type(e).__name__})") from None

    def write_split(self, split: Mapping[str, Any]) -> None:
        """split.npz: the example ids of each part of the split."""
        import io

        import numpy as np

        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: v for k, v in split.items() if v is not None})
        atomic_write(self.path / SPLIT, lambda f: f.write(buf.getbuffer()))

    def read_split(self) -> dict[str, Any]:
        """The saved split's arrays."""
        import numpy as np

        with np.load(self.path / SPLIT) as f:
            return {k: f[k] for k in f.files}

    def write_summary(self, summary: RunSummary) -> Path:
        """summary.json, atomically."""
        return summary.write(self.path)

    def read_summary(self) -> Optional[RunSummary]:
        """The saved summary, if any."""
        p = self.path / SUMMARY
        return RunSummary.read(p) if p.is_file() else None


def version_numbers(root: Path) -> list[int]:
    """k of every version_<k> folder under root."""
    if not root.is_dir():
        return []
    return [int(m.group(1)) for p in root.iterdir() if (m := re.fullmatch(r"version_(\d+)", p.name))]


def next_version(root: Path) -> int:
    """One more than the highest existing version (0 for none)."""
    versions = version_numbers(root)
    return max(versions) + 1 if versions else 0


def resume_config(saved: Config, overrides: Mapping[str, Any]) -> Config:
    """The saved config with only the overrides that cannot change the model, the data or the split."""
    changed = sorted(k for k, v in overrides.items() if getattr(saved, k) != v)
    refused = [k for k in changed if k not in resumable()]
    if refused:
        allowed = ", ".join(flag(k) for k in resumable())
        raise ConfigError(f"--resume: {flag(refused[0])} would change the model or the data of the saved run; "
                          f"a resume may only change {allowed}")
    return saved.replace(**{k: overrides[k] for k in changed})


__all__ = ["RunDir", "resume_config", "next_version", "version_numbers", "CONFIG", "SPLIT", "CHECKPOINTS", "LAST"]
