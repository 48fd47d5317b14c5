"""Write PyTorch-format (zip) state-dict files without PyTorch, for tests.

The layout is PyTorch's: ``archive/data.pkl`` (a pickle whose tensors are
``torch._utils._rebuild_tensor_v2`` calls on persistent storages),
``archive/data/<key>`` (raw little-endian bytes) and ``archive/version``.
Stand-in ``torch`` modules exist in ``sys.modules`` only while pickling so
the pickle names the real PyTorch globals.
"""

import collections
import io
import pickle
import sys
import types
import zipfile

import numpy as np

_STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                  np.dtype(np.int64): "LongStorage", np.dtype(np.int32): "IntStorage",
                  np.dtype(np.float16): "HalfStorage", np.dtype(np.uint8): "ByteStorage"}


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride = tuple(int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape)))
        return (sys.modules["torch._utils"]._rebuild_tensor_v2,
                (self.storage, 0, tuple(self.shape), stride, False, collections.OrderedDict()))


def _fake_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
        raise RuntimeError("stand-in")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    for name in _STORAGE_NAMES.values():
        setattr(torch, name, type(name, (), {"__module__": "torch", "__qualname__": name}))
    return {"torch": torch, "torch._utils": utils}


def save_torch_state_dict(path, state, archive="archive"):
    """Write ``state`` ({name: numpy array}) as a PyTorch zip checkpoint at ``path``."""
    storages, obj = [], collections.OrderedDict()
    for i, (name, value) in enumerate(state.items()):
        arr = np.ascontiguousarray(value)
        storages.append(_Storage(str(i), arr))
        obj[name] = _Tensor(storages[-1], arr.shape)
    fakes = _fake_torch()
    saved = {k: sys.modules.get(k) for k in fakes}
    sys.modules.update(fakes)
    try:
        class TorchPickler(pickle.Pickler):
            def persistent_id(self, o):
                if isinstance(o, _Storage):
                    storage_cls = getattr(fakes["torch"], _STORAGE_NAMES[o.array.dtype])
                    return ("storage", storage_cls, o.key, "cpu", int(o.array.size))
                return None

        buf = io.BytesIO()
        TorchPickler(buf, protocol=2).dump(obj)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{archive}/data.pkl", buf.getvalue())
        for s in storages:
            z.writestr(f"{archive}/data/{s.key}", s.array.astype(s.array.dtype.newbyteorder("<")).tobytes())
        z.writestr(f"{archive}/version", "3\n")
