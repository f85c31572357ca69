"""scripts/bench.py on tiny data with a stand-in peers module: rows, ratios and the RSS probe work."""
from __future__ import annotations

import json

from lit_regularize import bench

FAKE_PEERS = '''
import numpy as np
def load(path):
    d = np.load(path, allow_pickle=True)
    return list(d["x_train"]), d["y_train"].astype("float32")
def lean_sparse(seqs, y, h, epochs):
    return [0.5] * epochs, 0.7
def keras_fit(seqs, y, h, epochs):
    return [1.0, 2.0][:epochs] + [1.0] * max(0, epochs - 2), 0.6
VARIANTS = {"lean_sparse": lean_sparse, "keras_fit": keras_fit}
'''


def test_bench_reports_every_variant_with_ratios(tmp_path, imdb_dir, capsys, monkeypatch):
    peers = tmp_path / "peers.py"
    peers.write_text(FAKE_PEERS)
    monkeypatch.setattr("lit_regularize.bench.BENCH_SPLIT", {"val_size": 60, "batch_size": 32, "num_words": 40})
    monkeypatch.setattr("lit_regularize.bench.RSS_FIT_ARGS", ["--val-size", "60", "--num-words", "40"])
    rc = bench.main(["--data-dir", str(imdb_dir), "--peers", str(peers), "--hidden", "4", "--epochs", "2", "--json",
                     "lit_sparse", "lit_dense", "lean_sparse", "keras_fit"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["variant"]: r for r in out["rows"]}
    assert set(rows) == {"lit_sparse", "lit_dense", "lean_sparse", "keras_fit"}
    assert rows["keras_fit"]["min_epoch_s"] == 1.0 and rows["keras_fit"]["vs_lean_sparse"] == 2.0
    lit = rows["lit_sparse"]
    assert len(lit["epoch_s"]) == 2 and lit["min_epoch_s"] > 0
    assert abs(lit["vs_keras_fit"] - lit["min_epoch_s"] / 1.0) < 1e-9
    assert out["peak_rss_mb"] > 50


def test_bench_rejects_unknown_variant(tmp_path, imdb_dir, capsys):
    peers = tmp_path / "peers.py"
    peers.write_text(FAKE_PEERS)
    assert bench.main(["--data-dir", str(imdb_dir), "--peers", str(peers), "nope"]) == 2
    assert "unknown variant 'nope'" in capsys.readouterr().err
