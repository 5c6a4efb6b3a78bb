"""effbert: EfficientBERT as a reproducible, workflow-orchestrated pipeline.

Importing ``effbert`` registers the student (``model_type`` "effbert") with transformers' Auto classes, so
``AutoModelForSequenceClassification.from_pretrained(student_dir)`` works. Registration needs torch and
transformers' modeling code, which take seconds to import; so that ``effbert --help`` and the light commands stay
fast, it happens at once when transformers is already imported and otherwise right after transformers is first
imported (a one-shot import hook); importing a student's modeling file registers it as well.

The ``effbert`` command removes the hook (:func:`remove_registration_hook`): a stage registers the students only when
its own code loads one (`effbert.models.auto`), so a stage's code dependencies are exactly the modules it imports.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

__version__ = "0.1.0"


def _register() -> None:
    """Import the students' modeling files (which register the Auto classes), unless a method's module is being
    imported right now: then transformers was pulled in by that method's own code, and its package registers its
    students when it finishes (`effbert.methods.efficientbert`)."""
    for name, module in list(sys.modules.items()):
        if name.startswith("effbert.methods.") and getattr(getattr(module, "__spec__", None), "_initializing", False):
            return
    # imported by name: the hook never fires in a stage process (the effbert command removes it first), so the
    # student code is not a code dependency of every stage (effbert.code_deps reads static imports only)
    importlib.import_module("effbert.models.auto").register_students()


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


def remove_registration_hook() -> None:
    """Stop registering the students when transformers is imported (the ``effbert`` command calls this)."""
    for finder in [f for f in sys.meta_path if isinstance(f, _RegisterAfterTransformers)]:
        sys.meta_path.remove(finder)
