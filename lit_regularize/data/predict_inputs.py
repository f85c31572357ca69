"""New inputs for a run trained on the user's own data (--data KIND:PATH), encoded as its training examples were.

Everything comes from the run folder (never from the training data, which may be gone): classes.json, and
preprocessing.json (csv), word_index.json (textdir) or normalization.json (imagedir), written at training time by
the DataModule's artifacts(). Each reader turns one input path into (a name per example, a Dataset) and the Dataset
is the very class training batches came from (TableDataset, MultiHotDataset, ImageDataset, ...), with dummy labels,
so a row is encoded by the same code at training and at predict time.

    csv       a CSV file with a header naming the training feature columns (the label column, if present, and any
              other column are ignored); numbers standardized with the saved means / stds, categories one-hot with
              the saved categories (a category training lacked: all zeros)
    npz       an .npz with x (dense, N × features) or x_indptr, x_indices, x_data, x_shape (CSR)
    textdir   a .txt file or a folder of them (searched recursively), keras-tokenized with the saved word index
    imagedir  an image file or a folder of them (searched recursively): 8-bit grayscale by the one rule training
              used (data.images.to_gray8), resized to the run's image_size, normalized with the saved training
              mean / std; inverted (255 - pixel) only when asked (predict --invert)

Text files are read by the one rule of text inputs (lit_regularize.textio: UTF-8, undecodable bytes replaced and
counted in a warning line), as training read them.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_regularize.config import data_kind
from lit_regularize.errors import DataError
from lit_regularize.oserrors import os_reason
from lit_regularize.rundir import RunDir

Reader = Callable[[str], tuple[list[str], Dataset]]


def _existing(item: str | os.PathLike) -> Path:
    p = Path(item).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    return p


def _file(item: str | os.PathLike, what: str) -> Path:
    p = _existing(item)
    if not p.is_file():
        raise DataError(f"{p}: not a file (expected {what})")
    return p


def files_of(item: str | os.PathLike, suffixes: tuple[str, ...], what: str) -> list[Path]:
    """[item] for a file (whatever its suffix), else the folder's files with one of suffixes, recursively, sorted."""
    p = _existing(item)
    if p.is_file():
        return [p]
    try:
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes
                       and not any(part.startswith(".") for part in f.relative_to(p).parts))
    except OSError as e:
        raise DataError(f"{p}: cannot list ({os_reason(e)})") from None
    if not files:
        raise DataError(f"{p}: empty folder (no {what} files: {', '.join(suffixes)})")
    return files


def row_names(shown: str, n: int) -> list[str]:
    """How predict names the examples of one input: the input itself, or input[i] when it holds several."""
    return [shown] if n == 1 else [f"{shown}[{i}]" for i in range(n)]


def file_names(item: str, files: list[Path]) -> list[str]:
    """How predict names the examples of a file-or-folder input: the file as given, or each file of the folder."""
    return [item] if Path(item).is_file() else [str(f) for f in files]


# -- csv --------------------------------------------------------------------------------------------------

def csv_reader(rundir: RunDir) -> Reader:
    """Rows of a new CSV, encoded with the run's preprocessing.json by the training TableDataset."""
    from lit_regularize.data.tabular import Preprocessing, Table, TableDataset, _header, _is_missing, _open, _rows

    spec = rundir.read_artifact("preprocessing.json")
    try:
        numeric = sorted(spec["numeric"].items(), key=lambda kv: kv[1]["column"])
        categorical = list(spec["categorical"].items())  # name -> {value: input column}
        target, n_features = spec["target"], int(spec["n_features"])
        mean = np.asarray([v["mean"] for _, v in numeric], np.float32)
        std = np.asarray([v["std"] for _, v in numeric], np.float32)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise DataError(f"{rundir.path / 'preprocessing.json'}: not the preprocessing a CSV run saves") from None
    # code k < len(values) is the k-th saved category; code len(values) stands for every unseen one (-1: zeros)
    values = [list(v) for _, v in categorical]
    onehot = np.concatenate([[*cats.values(), -1] for _, cats in categorical]).astype(np.int64) \
        if categorical else np.zeros(0, np.int64)
    base = np.cumsum([0] + [len(v) + 1 for v in values[:-1]]).astype(np.int64) if values else np.zeros(0, np.int64)
    prep = Preprocessing(mean, std, onehot, base, n_features)
    num_names = [name for name, _ in numeric]
    cat_names = [name for name, _ in categorical]

    def read(item: str) -> tuple[list[str], Dataset]:
        p = _file(item, "a CSV file")
        with _open(p) as f:
            rows = _rows(p, f)
            header = _header(p, rows)
            missing = [c for c in num_names + cat_names if c not in header]
            if missing:
                raise DataError(f"{p}: no column(s) {', '.join(map(repr, missing[:5]))} that the training data had "
                                f"(the model needs {', '.join(num_names + cat_names)}; {target!r} is optional)")
            num_at = [header.index(c) for c in num_names]
            cat_at = [header.index(c) for c in cat_names]
            code_of = [{v: k for k, v in enumerate(vals)} for vals in values]
            nums, codes, lines = [], [], []
            for line, row in rows:
                if len(row) != len(header):
                    raise DataError(f"{p}: line {line} has {len(row)} fields but the header has {len(header)}")
                for name, j in zip(num_names + cat_names, num_at + cat_at):
                    if _is_missing(row[j]):
                        raise DataError(f"{p}: line {line}, column {name!r}: missing value {row[j]!r}")
                try:
                    x = [float(row[j]) for j in num_at]
                except ValueError:
                    bad = next(k for k, j in enumerate(num_at) if not _is_number(row[j]))
                    raise DataError(f"{p}: line {line}, column {num_names[bad]!r}: {row[num_at[bad]]!r} is not a "
                                    "number (the column is numeric in the training data)") from None
                if not np.isfinite(x).all():
                    bad = int(np.flatnonzero(~np.isfinite(x))[0])
                    raise DataError(f"{p}: line {line}, column {num_names[bad]!r}: inf is not a usable feature value")
                nums.append(x)
                codes.append([code_of[c].get(row[j].strip(), len(values[c])) for c, j in enumerate(cat_at)])
                lines.append(line)
        if not lines:
            raise DataError(f"{p}: no rows to predict (only a header)")
        n = len(lines)
        table = Table(np.asarray(nums, np.float32).reshape(n, len(num_at)),
                      np.asarray(codes, np.int32).reshape(n, len(cat_at)), np.zeros(n, np.int64),
                      np.asarray(lines, np.int64))
        return row_names(item, n), TableDataset(table, None, prep)

    return read


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


# -- npz --------------------------------------------------------------------------------------------------

def npz_reader(n_features: int, dense: bool) -> Reader:
    """Rows of x (dense) or x_indptr/x_indices/x_data/x_shape (CSR) of a new .npz, as training's datasets."""
    from lit_regularize.data.arrays import CSRValuesDataset, DenseRowsDataset, _csr, _dense
    from lit_regularize.data.imdb import CSRArrays, MultiHotDataset

    def read(item: str) -> tuple[list[str], Dataset]:
        p = _file(item, "an .npz file")
        if not zipfile.is_zipfile(p):
            raise DataError(f"{p}: not an npz (zip) archive")
        try:
            with np.load(p, allow_pickle=False) as f:
                if "x" in f.files:
                    x = _dense(p, np.asarray(f["x"]), "x")
                    n, nf, csr = len(x), x.shape[1], None
                elif "x_indptr" in f.files:
                    crow, cols, values, n, nf = _csr(p, f, "x")
                    csr = (crow, cols, values)
                else:
                    raise DataError(f"{p}: no x (dense features) or x_indptr/x_indices/x_data/x_shape (CSR); "
                                    f"keys found: {', '.join(sorted(f.files)) or 'none'}")
        except DataError:
            raise
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            why = " ".join(str(e).split())[:120]
            raise DataError(f"{p}: not a readable npz file ({type(e).__name__}: {why})") from None
        if nf != n_features:
            raise DataError(f"{p}: x has {nf} features but the run was trained on {n_features}")
        if n == 0:
            raise DataError(f"{p}: x has no rows")
        labels = torch.zeros(n, dtype=torch.long)
        if csr is None:
            ds: Dataset = DenseRowsDataset(torch.from_numpy(x), labels, None)
        elif bool((csr[2] == 1).all()):  # 0/1 multi-hot: the sparse first layer, as in training
            ds = MultiHotDataset(CSRArrays(torch.from_numpy(csr[0]), torch.from_numpy(csr[1]), labels), None,
                                 n_features, dense)
        else:
            ds = CSRValuesDataset(*(torch.from_numpy(a) for a in csr), labels, None, n_features)
        return row_names(item, n), ds

    return read


# -- textdir ----------------------------------------------------------------------------------------------

def text_reader(rundir: RunDir, num_words: int, dense: bool) -> Reader:
    """.txt files (or folders of them) as the training rows: keras tokenizer, the run's word_index.json."""
    from lit_regularize.data.imdb import CSRArrays, MultiHotDataset
    from lit_regularize.data.textdir import TEXT_SUFFIXES, WORD_INDEX, read_text
    from lit_regularize.text import encode_texts, load_word_index

    rundir.read_artifact(WORD_INDEX)  # missing: the run-folder error, before the word-index reader's own
    word_index = load_word_index(rundir.path / WORD_INDEX)

    def read(item: str) -> tuple[list[str], Dataset]:
        files = files_of(item, TEXT_SUFFIXES, "text")
        crow, cols = encode_texts([read_text(f) for f in files], word_index, num_words)
        labels = torch.zeros(len(files), dtype=torch.long)
        ds = MultiHotDataset(CSRArrays(torch.from_numpy(crow), torch.from_numpy(cols), labels), None, num_words,
                             dense)
        return file_names(item, files), ds

    return read


# -- imagedir ---------------------------------------------------------------------------------------------

def image_reader(rundir: RunDir, invert: bool = False) -> Reader:
    """Image files (or folders of them) decoded, resized and normalized as the run's training images; invert:
    255 - pixel (asked for by predict --invert)."""
    from lit_regularize.data.imagedir import IMAGE_SUFFIXES, read_image
    from lit_regularize.data.mnist import ImageDataset

    spec = rundir.read_artifact("normalization.json")
    try:
        size, mean, std = int(spec["image_size"]), float(spec["mean"]), float(spec["std"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{rundir.path / 'normalization.json'}: not the normalization an image run saves") from None

    def read(item: str) -> tuple[list[str], Dataset]:
        files = files_of(item, IMAGE_SUFFIXES, "image")
        images = np.stack([read_image(f, size) for f in files])
        if invert:
            images = 255 - images
        ds = ImageDataset(torch.from_numpy(images), torch.zeros(len(files), dtype=torch.long), None, mean, std)
        return file_names(item, files), ds

    return read


def saved_classes(rundir: RunDir) -> list[str]:
    """The class names an own-data run saved (classes.json); missing or malformed is one DataError."""
    names = rundir.read_artifact("classes.json")
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names):
        raise DataError(f"{rundir.path / 'classes.json'}: expected a list of two or more class names")
    return names


def saved_width(rundir: RunDir, settings: dict[str, Any]) -> tuple[Optional[int], str]:
    """(the input width an own-data run's settings and artifacts fix, what fixes it); (None, "") for npz, whose
    width only the training file said."""
    kind = data_kind(str(settings["data"]))
    if kind == "textdir":
        return int(settings["num_words"]), f"num_words {settings['num_words']}"
    if kind == "csv":
        spec = rundir.read_artifact("preprocessing.json")
        try:
            return int(spec["n_features"]), f"{spec['n_features']} columns in preprocessing.json"
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{rundir.path / 'preprocessing.json'}: not the preprocessing a CSV run saves") from None
    if kind == "imagedir":
        spec = rundir.read_artifact("normalization.json")
        try:
            size = int(spec["image_size"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{rundir.path / 'normalization.json'}: not the normalization an image run "
                            "saves") from None
        return size * size, f"{size}x{size} images in normalization.json"
    return None, ""


def reader(rundir: RunDir, settings: dict[str, Any], n_features: int,
           invert: bool = False) -> tuple[Reader, list[str]]:
    """(the input reader, the class names) of an own-data run; a missing or damaged artifact is one DataError.
    invert: image runs' inputs become 255 - pixel."""
    kind = data_kind(str(settings["data"]))
    names = saved_classes(rundir)
    dense = settings.get("input_format") == "dense"
    if kind == "csv":
        read = csv_reader(rundir)
    elif kind == "npz":
        read = npz_reader(n_features, dense)
    elif kind == "textdir":
        read = text_reader(rundir, int(settings["num_words"]), dense)
    elif kind == "imagedir":
        read = image_reader(rundir, invert)
    else:
        raise DataError(f"{rundir.path}: the run's config names no known dataset (data: {settings['data']!r})")
    return read, names


__all__ = ["reader", "csv_reader", "npz_reader", "text_reader", "image_reader", "files_of", "row_names", "file_names",
           "saved_classes", "saved_width", "Reader"]
