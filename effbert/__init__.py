"""effbert: EfficientBERT as a reproducible, workflow-orchestrated pipeline.

Importing ``effbert`` registers the student (``model_type`` "effbert") with transformers' Auto classes, so
``AutoModelForSequenceClassification.from_pretrained(student_dir)`` works. Registration needs torch and
transformers' modeling code, which take seconds to import; so that ``effbert --help`` and the light commands stay
fast, it happens at once when transformers is already imported and otherwise right after transformers is first
imported (a one-shot import hook); importing anything from ``effbert.models`` registers as well.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

__version__ = "0.1.0"


def _register() -> None:
    """Import ``effbert.models`` (which registers the Auto classes), unless it is being imported right now: then
    transformers was pulled in by effbert's own model code, whose package ``__init__`` registers on completion."""
    models = sys.modules.get("effbert.models")
    spec = getattr(models, "__spec__", None)
    if models is not None and getattr(spec, "_initializing", False):
        return
    import effbert.models  # noqa: F401


class _RegisterAfterTransformers(importlib.abc.MetaPathFinder):
    """Finds nothing itself; when ``transformers`` is about to be imported, wraps its loader so that the Auto
    registration runs once the package has finished executing, then removes itself."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "transformers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        loader = spec.loader if spec is not None else None
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        run_package = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run_package(module)
            _register()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if "transformers" in sys.modules:
    _register()
elif not any(isinstance(finder, _RegisterAfterTransformers) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterTransformers())
