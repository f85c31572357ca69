"""Weight averaging: an exponential moving average of the weights (EMA) or stochastic weight averaging (SWA)."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from lit_regularize.regularizers.base import Regularizer, register_regularizer
from lit_regularize.settings import at_least, in_range, setting

KINDS = ("none", "ema", "swa")
EMA_DECAY, SWA_START = 0.99, 2


@register_regularizer("weight_averaging")
class WeightAveraging(Regularizer):
    """The run keeps an average A of its weights next to the trained ones W: EMA updates A <- D*A + (1-D)*W after
    every optimizer step (A starts as the first step's W); SWA averages the weights at the end of epochs
    --swa-start, --swa-start + 1, ... equally (Izmailov et al. 2018) and recomputes BatchNorm statistics for A.

    Validation, the best checkpoint, both test passes, predict and export use A (from the first average on; W
    before it); training continues from W. last.ckpt holds both, so a resume keeps the average
    (`lit_regularize.regularizers.averaging.AveragedWeights`)."""

    settings = (setting("weight_averaging", str, "none", "average the weights: ema (every step) or swa (epoch ends "
                        "from --swa-start); validation, checkpoints, test, predict and export use the average",
                        "regularization", choices=KINDS),
                setting("ema_decay", float, EMA_DECAY, "EMA decay D: average <- D*average + (1-D)*weights after "
                        "every optimizer step", "regularization", metavar="D", check=in_range(0.0, 1.0)),
                setting("swa_start", int, SWA_START, "SWA: the first (1-based) epoch whose end-of-epoch weights "
                        "enter the average", "regularization", metavar="E", check=at_least(1)))
    # EMA 0.99: a half-life of ~70 optimizer steps, about 2 epochs of a 15,000-review IMDB run at batch 512 (30
    #   steps an epoch) or of Fashion-MNIST 100/class at batch 32; the 0.999 of timm / Lightning's
    #   EMAWeightAveraging assumes 10^5 steps and would still average the first epochs' weights here.
    # SWA from epoch 2: Izmailov et al. (2018) start at 75% of a fixed budget, but early stopping (patience 3)
    #   ends IMDB runs around epoch 5-8; epoch 1's weights are still far from the basin, so they are left out.
    presets = {"ema": {"weight_averaging": "ema", "ema_decay": EMA_DECAY},
               "swa": {"weight_averaging": "swa", "swa_start": SWA_START}}
    search = {"ema_decay": {"type": "float", "low": 0.9, "high": 0.999},
              "swa_start": {"type": "int", "low": 1, "high": 5}}

    @classmethod
    def enabled(cls, values: Mapping[str, Any]) -> bool:
        return values.get("weight_averaging", "none") != "none"

    @classmethod
    def check(cls, values: Mapping[str, Any]) -> Optional[str]:
        kind = values.get("weight_averaging", "none")
        if kind != "ema" and values.get("ema_decay", EMA_DECAY) != EMA_DECAY:
            return "--ema-decay only applies with --weight-averaging ema (or --reg ema)"
        if kind != "swa" and values.get("swa_start", SWA_START) != SWA_START:
            return "--swa-start only applies with --weight-averaging swa (or --reg swa)"
        if kind == "ema" and not values.get("ema_decay", EMA_DECAY) > 0:
            return "--ema-decay must be in (0, 1) (0 would keep no average)"
        return None

    def callbacks(self) -> list:
        from lit_regularize.regularizers.averaging import AveragedWeights

        return [AveragedWeights(self.weight_averaging, decay=self.ema_decay, start_epoch=self.swa_start)]

    def shown(self) -> list[str]:
        return ["weight_averaging", "ema_decay" if self.weight_averaging == "ema" else "swa_start"]

    def describe(self) -> str:
        if self.weight_averaging == "ema":
            return f"EMA {self.ema_decay:g}"
        return f"SWA from epoch {self.swa_start}"
