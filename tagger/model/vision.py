"""torchvision, imported without torch._dynamo.

`import torchvision` loads `torchvision.ops.roi_align`, which imports `torch._dynamo.utils` at module level
for one helper that roi_align calls at run time. Loading dynamo (and sympy, torch.fx's symbolic shapes)
is about half of torchvision's import: 2.5 of 5.2 CPU-seconds on the 2-core machine, paid by every worker,
`tagger train` and in-process embedding at start-up, though an eager model never touches dynamo. torchvision
itself means to defer it (its `lazy_compile` "avoids eagerly importing dynamo"; pytorch/vision#8436).

`torchvision()` imports the package with that one name deferred: while torchvision loads, `torch._dynamo`
and `torch._dynamo.utils` resolve to a stand-in whose `is_compile_supported` imports the real one on its
first call; the stand-in is removed as soon as torchvision is loaded, so `torch.compile` and any later
`import torch._dynamo` get the real module. If anything else reaches for dynamo while torchvision loads,
the stand-in is removed and torchvision is imported the ordinary way.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

_DEFERRED = ("torch._dynamo", "torch._dynamo.utils")


def torchvision() -> ModuleType:
    """The torchvision package (`torchvision.models`, `.io`, `.ops` loaded), with dynamo not yet imported.

    Every import of torchvision in tagger goes through here (an import contract in pyproject.toml).
    """
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    import torch  # noqa: F401  (the real torch first: only dynamo is deferred)

    if "torch._dynamo" in sys.modules:  # already paid for (torch.compile ran in this process)
        import torchvision as loaded

        return loaded
    finder = _Deferred()
    sys.meta_path.insert(0, finder)
    try:
        import torchvision as loaded
    except Exception as exc:  # something touched the stand-in beyond the one helper: load it plainly
        log.debug("torchvision did not load with dynamo deferred (%s); importing it the ordinary way", exc)
        _forget_torchvision()
        finder.remove()
        import torchvision as loaded
    finally:
        finder.remove()
    return loaded


def _is_compile_supported(device_type: Any) -> Any:
    """The real torch._dynamo.utils.is_compile_supported, imported on first use (roi_align's only call)."""
    from torch._dynamo.utils import is_compile_supported

    return is_compile_supported(device_type)


class _Deferred(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves the two dynamo names to a stand-in while torchvision loads."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _DEFERRED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=fullname == "torch._dynamo")

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        self.made.append(module.__name__)
        if module.__name__ == "torch._dynamo.utils":
            module.is_compile_supported = _is_compile_supported  # type: ignore[attr-defined]

    def remove(self) -> None:
        """Take the finder out of the import path and the stand-ins out of sys.modules and torch."""
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        for name in self.made:
            if getattr(sys.modules.get(name), "__loader__", None) is self:
                del sys.modules[name]
        torch = sys.modules.get("torch")
        stand_in = getattr(torch, "__dict__", {}).get("_dynamo")
        if stand_in is not None and getattr(stand_in, "__loader__", None) is self:
            delattr(torch, "_dynamo")
        self.made.clear()


def _forget_torchvision() -> None:
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]
