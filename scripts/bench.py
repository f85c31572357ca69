#!/usr/bin/env python
"""Time lit_regularize's fit (sparse and dense first layer) beside the peer loops of peers_imdb.py, in one run.

Reports seconds per epoch (train + validation; holdout 15,000 / 9,996, batch 512), the ratio of each to keras'
model.fit and to the lean sparse torch loop at the same hidden size, and the peak RSS of a full IMDB fit.

  python scripts/bench.py --data-dir ../shared/data
  python scripts/bench.py --data-dir ../shared/data --hidden 16 --epochs 3 lit_sparse keras_fit lean_sparse --json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_regularize.cli import guarded  # noqa: E402

DEFAULT_PEERS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "peers_imdb.py"


@guarded
def main(argv: Optional[Sequence[str]] = None) -> int:
    from lit_regularize.bench import LIT_VARIANTS, load_peers, machine, markdown_table, peak_rss_of_fit, time_all
    from lit_regularize.errors import UserError
    from lit_regularize.run import quiet_lightning

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="*", help="lit_sparse | lit_dense | seed000 | keras_fit | lean_dense | "
                                               "lean_sparse (default: all)")
    p.add_argument("--data-dir", required=True, help="folder holding imdb.npz")
    p.add_argument("--peers", default=str(DEFAULT_PEERS), help="path of peers_imdb.py")
    p.add_argument("--hidden", type=int, nargs="+", default=[16, 512], help="hidden sizes to time")
    p.add_argument("--epochs", type=int, default=5, help="epochs per variant (the minimum epoch time is reported)")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-RSS measurement of a full fit")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    a = p.parse_intermixed_args(argv)
    peers = load_peers(a.peers)
    known = list(LIT_VARIANTS) + list(peers.VARIANTS)
    variants = a.variants or known
    for v in variants:
        if v not in known:
            raise UserError(f"unknown variant {v!r} (choose from {', '.join(known)})")
    if not (Path(a.data_dir) / "imdb.npz").is_file():
        raise UserError(f"--data-dir {a.data_dir}: no imdb.npz there")
    quiet_lightning()
    log = (lambda s: print(s, file=sys.stderr)) if a.json else print
    rss = None
    if not a.no_rss:
        log("measuring peak RSS of scripts/fit.py on the full IMDB ...")
        with tempfile.TemporaryDirectory(prefix="lit_rss_") as d:
            rss = peak_rss_of_fit(a.data_dir, d)
    rows = time_all(a.data_dir, peers, variants, a.hidden, a.epochs, progress=log)
    if a.json:
        print(json.dumps({"machine": machine(), "peak_rss_mb": rss, "rows": rows}, indent=2))
    else:
        print(f"\nmachine: {machine()}")
        print(markdown_table(rows))
        if rss is not None:
            print(f"\npeak RSS of scripts/fit.py on full IMDB (train + val + test): {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
