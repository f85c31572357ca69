"""Regularizers as plug-ins: one module each, registered by name (see `base.py` for what a module owns).

Registration order is the order of the --reg presets and of the hooks in a hidden block.
Importing this package registers the built-in ones; it imports no torch.
"""
from lit_regularize.regularizers.base import (DATA, MODEL, SHAPE, Regularizer, create, describe, enabled_settings,
                                              plugin_modules, presets, register_regularizer, registered,
                                              search_entries, settings_of, strengths)
from lit_regularize.regularizers import capacity, l1, l2, l1_l2, dropout, batchnorm, weight_decay, augment  # noqa: F401,E402
# the modern catalog (issue 23); mixup before noise: input noise is added to the mixed batch, as a noise layer would
from lit_regularize.regularizers import (label_smoothing, max_norm, mixup, noise, weight_averaging,  # noqa: F401,E402
                                         spectral_norm)

__all__ = ["Regularizer", "register_regularizer", "registered", "presets", "create", "describe", "enabled_settings",
           "search_entries", "settings_of", "strengths", "plugin_modules", "MODEL", "DATA", "SHAPE"]
