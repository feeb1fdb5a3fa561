"""Training the adapters; the package is also the function ``i2v.train``.

    import i2v
    config = i2v.load_train_config("my_train.yaml", ["optim.max_steps=500"])
    result = i2v.train(config)       # = i2v.train.api.train(config): result.output_dir, result.metrics

Calling the package (rather than binding a function to the name ``i2v.train``) keeps
``import i2v.train.trainer`` and ``i2v.train.config`` working as module paths.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from i2v.train.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
