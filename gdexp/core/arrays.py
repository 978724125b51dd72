"""Which array library a batch computes with: numpy by default, or the one the loss's parameters live in.

The descent, the optimizers and the stopping rules are written once, for any
array that follows the Python array API standard (numpy, torch through
`array_api_compat`), as scikit-learn's array-API estimators are. numpy arrays
take numpy itself (numpy >= 2 implements the standard in its main namespace,
and the numpy path keeps its speed and its bits); any other array takes
`array_api_compat.array_namespace`, imported only then, so the base install
needs no torch.

Curves and the stopping rules' records live on the host: `to_host` brings a
block of them back at once, `like` sends host values (hyper-parameters,
schedule values) to where the parameters are.
"""
from __future__ import annotations

import numpy as np

__all__ = ["namespace", "to_host", "like", "is_numpy"]


def is_numpy(x) -> bool:
    """True for numpy arrays (and numpy scalars): the default, untouched path."""
    return isinstance(x, (np.ndarray, np.generic))


def namespace(x):
    """The array namespace of x: numpy itself for numpy arrays, else array_api_compat's.

    >>> namespace(np.zeros(2)) is np
    True
    """
    if is_numpy(x):
        return np
    import array_api_compat

    return array_api_compat.array_namespace(x)


def to_host(x) -> np.ndarray:
    """x as a numpy array on the host (numpy arrays as they are, no copy).

    >>> a = np.ones(2); to_host(a) is a
    True
    """
    if is_numpy(x):
        return x
    import array_api_compat

    return np.asarray(array_api_compat.to_device(x, "cpu"))


def like(value, x):
    """A host value (number or numpy array) as an array of x's library, dtype and device.

    numpy x: the value as a numpy array, unchanged in dtype (numpy's path casts nothing).
    """
    if is_numpy(x):
        return np.asarray(value)
    import array_api_compat

    xp = array_api_compat.array_namespace(x)
    return xp.asarray(np.ascontiguousarray(value), dtype=x.dtype, device=array_api_compat.device(x))
