"""Student architectures as data: per layer a searched MLP expression, a unit count and an intermediate width.

An `Architecture` is what a search stage writes and what the final-distillation stage reads; the model code never
hard-codes one. JSON layout (``effbert/architectures/*.json`` ships the paper's models)::

    {"name": "efficientbert", "hidden_size": 540,
     "layers": [{"expr": "tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))", "units": 4, "width": 270}, ...]}

A layer's width must be on the paper's grid ``k = hidden_size // r`` with ``r`` in 1..4, so every layer has a size
id ``(s, r)`` (``s`` = units). An expression may carry that size id in its tokens (``linear4_2``, as in the paper's
configs); it must then agree with ``units``/``width``. Each layer is checked with `expr.check` at its size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from effbert.methods.efficientbert.expr import SIZE_CHOICES, Size, check, parse, size_id, with_size

__all__ = [
    "ARCHITECTURE_FILE",
    "Architecture",
    "LayerSpec",
    "check_layer",
    "list_architectures",
    "load_architecture",
    "width_divisor",
]

ARCHITECTURE_FILE = "architecture.json"
"""The file name of an architecture next to a model or a search stage's output."""

_ARCH_KEYS = ("name", "hidden_size", "layers")
_LAYER_KEYS = ("expr", "units", "width")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def width_divisor(hidden: int, width: int) -> int | None:
    """The smallest ``r`` in 1..4 with ``hidden // r == width``, or None when ``width`` is off the grid."""
    return next((r for r in SIZE_CHOICES if hidden // r == width), None)


def check_layer(expr: str, units: int, width: int, hidden: int) -> list[str]:
    """Every problem of one layer (expression, unit count, width) at hidden size ``hidden``.

    Args:
        expr: the layer's expression string (with or without a size id).
        units: number of stacked MLP units ``s`` (1..4).
        width: intermediate width ``k`` of every unit; must equal ``hidden // r`` for some ``r`` in 1..4.
        hidden: the hidden size H (an int >= 4).

    Returns:
        Readable messages; an empty list means the layer is valid.
    """
    if not _is_int(hidden) or hidden < 4:
        return [f"hidden size must be an int >= 4, got {hidden!r}"]
    if not isinstance(expr, str):
        return [f"expression must be a string, got {expr!r}"]
    try:
        tree = parse(expr)
    except ValueError as err:
        return [str(err)]
    errors = []
    if not _is_int(units) or units not in SIZE_CHOICES:
        errors.append(f"units must be an int in {SIZE_CHOICES}, got {units!r}")
    grid = [hidden // r for r in SIZE_CHOICES]
    r = width_divisor(hidden, width) if _is_int(width) else None
    if r is None:
        errors.append(f"width must be hidden_size // r for r in {SIZE_CHOICES}, i.e. one of {grid}, got {width!r}")
    if errors or r is None:
        return errors
    own = size_id(tree)
    if own is not None and own != (units, r):
        return [
            f"'{expr}' carries size id {own[0]}_{own[1]} but the layer has units={units}, width={width} "
            f"(size id {units}_{r} at hidden size {hidden})"
        ]
    return [f"'{expr}': {message}" for message in check(with_size(tree, units, r), hidden)]


@dataclass(frozen=True)
class LayerSpec:
    """One layer's searched MLP block.

    Attributes:
        expr: the expression string, canonical form (``str(parse(expr))``).
        units: number of stacked MLP units ``s``.
        width: intermediate width ``k`` of every unit.
    """

    expr: str
    units: int
    width: int


@dataclass(frozen=True)
class Architecture:
    """A student architecture: hidden size and one `LayerSpec` per transformer layer.

    Construction validates every layer and raises ``ValueError`` naming the architecture and the (1-based) layer.

    Attributes:
        name: a label (the JSON file's ``name``).
        hidden_size: the hidden size H.
        layers: the per-layer specs, layer 1 first.
    """

    name: str
    hidden_size: int
    layers: tuple[LayerSpec, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"architecture name must be a non-empty string, got {self.name!r}")
        if not _is_int(self.hidden_size) or self.hidden_size < 4:
            raise ValueError(f"architecture {self.name!r}: hidden_size must be an int >= 4, got {self.hidden_size!r}")
        if not isinstance(self.layers, tuple) or not self.layers:
            raise ValueError(f"architecture {self.name!r}: layers must be a non-empty tuple of LayerSpec")
        canonical = []
        for index, layer in enumerate(self.layers, start=1):
            if not isinstance(layer, LayerSpec):
                raise ValueError(f"architecture {self.name!r}: layer {index} is not a LayerSpec: {layer!r}")
            errors = check_layer(layer.expr, layer.units, layer.width, self.hidden_size)
            if errors:
                raise ValueError(f"architecture {self.name!r}: layer {index}: " + "; ".join(errors))
            canonical.append(LayerSpec(str(parse(layer.expr)), layer.units, layer.width))
        object.__setattr__(self, "layers", tuple(canonical))

    @property
    def num_layers(self) -> int:
        """Number of transformer layers L."""
        return len(self.layers)

    @property
    def exprs(self) -> list[str]:
        """The per-layer expression strings."""
        return [layer.expr for layer in self.layers]

    @property
    def units(self) -> list[int]:
        """The per-layer unit counts ``s``."""
        return [layer.units for layer in self.layers]

    @property
    def widths(self) -> list[int]:
        """The per-layer intermediate widths ``k``."""
        return [layer.width for layer in self.layers]

    @property
    def size_ids(self) -> list[Size]:
        """The per-layer size ids ``(s, r)`` with ``k = hidden_size // r``."""
        return [(layer.units, width_divisor(self.hidden_size, layer.width) or 0) for layer in self.layers]

    @classmethod
    def from_size_ids(
        cls, exprs: Sequence[str], sizes: Sequence[Size], hidden_size: int, name: str = "custom"
    ) -> Architecture:
        """Build from expressions and size ids; each expression gets its size id in its tokens.

        Args:
            exprs: one expression string per layer (with or without size ids).
            sizes: one ``(s, r)`` per layer; width ``k = hidden_size // r``.
            hidden_size: the hidden size H.
            name: the architecture's name.

        Returns:
            The architecture.

        Raises:
            ValueError: different lengths, an invalid size id, or an invalid layer.
        """
        if not _is_int(hidden_size) or hidden_size < 4:
            raise ValueError(f"architecture {name!r}: hidden_size must be an int >= 4, got {hidden_size!r}")
        if len(exprs) != len(sizes):
            raise ValueError(f"architecture {name!r}: got {len(exprs)} expressions but {len(sizes)} size ids")
        layers = []
        for index, (expr, size) in enumerate(zip(exprs, sizes, strict=True), start=1):
            try:
                s, r = size
                tree = with_size(parse(expr), s, r)
            except (TypeError, ValueError) as err:
                raise ValueError(f"architecture {name!r}: layer {index}: {err}") from err
            layers.append(LayerSpec(str(tree), s, hidden_size // r))
        return cls(name, hidden_size, tuple(layers))

    def scaled(self, hidden_size: int, name: str | None = None) -> Architecture:
        """The same expressions and size ids ``(s, r)`` at another hidden size (``k = hidden_size // r``).

        Raises:
            ValueError: a layer is invalid at the new hidden size.
        """
        return Architecture.from_size_ids(self.exprs, self.size_ids, hidden_size, name or self.name)

    def resized(self, hidden_size: int, num_layers: int | None = None, name: str | None = None) -> Architecture:
        """This architecture at another hidden size and, optionally, another depth.

        Size ids ``(s, r)`` are kept (``k = hidden_size // r``). With fewer layers, student layer ``l`` (1-based) takes
        this architecture's layer ``l * L / L_new`` (the uniform mapping of the distillation losses: 6 -> 3 keeps
        layers 2, 4, 6); with more layers each layer is repeated, as EfficientBERT++ does (6 -> 12: 1, 1, 2, 2, ...).

        Raises:
            ValueError: ``num_layers`` < 1, or a layer is invalid at the new hidden size.
        """
        count = self.num_layers if num_layers is None else num_layers
        if not _is_int(count) or count < 1:
            raise ValueError(f"architecture {self.name!r}: num_layers must be an int >= 1, got {count!r}")
        if count <= self.num_layers:
            picked = [(layer * self.num_layers) // count - 1 for layer in range(1, count + 1)]
        else:
            picked = [(layer * self.num_layers) // count for layer in range(count)]
        exprs = [self.exprs[i] for i in picked]
        sizes = [self.size_ids[i] for i in picked]
        return Architecture.from_size_ids(exprs, sizes, hidden_size, name or self.name)

    def describe(self) -> str:
        """One line: every layer's units x width and expression (``L1 2x540 gelu(x)*x; ...``)."""
        return "; ".join(
            f"L{i} {layer.units}x{layer.width} {layer.expr}" for i, layer in enumerate(self.layers, start=1)
        )

    def digest(self) -> str:
        """A short sha256 of the architecture's JSON form (names a checkpoint folder)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready mapping."""
        layers = [{"expr": layer.expr, "units": layer.units, "width": layer.width} for layer in self.layers]
        return {"name": self.name, "hidden_size": self.hidden_size, "layers": layers}

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> Architecture:
        """Build from the JSON mapping, rejecting unknown or missing keys.

        Args:
            data: the parsed JSON.
            source: where the data came from, prefixed to every error message.

        Raises:
            ValueError: malformed data or an invalid layer; the message starts with ``source``.
        """
        try:
            if not isinstance(data, dict) or set(data) != set(_ARCH_KEYS):
                raise ValueError(f"expected an object with exactly the keys {_ARCH_KEYS}, got {data!r:.200}")
            if not isinstance(data["layers"], list):
                raise ValueError(f"'layers' must be a list, got {data['layers']!r:.200}")
            layers = []
            for index, layer in enumerate(data["layers"], start=1):
                if not isinstance(layer, dict) or set(layer) != set(_LAYER_KEYS):
                    raise ValueError(
                        f"layer {index}: expected an object with exactly the keys {_LAYER_KEYS}, got {layer!r}"
                    )
                layers.append(LayerSpec(layer["expr"], layer["units"], layer["width"]))
            return cls(data["name"], data["hidden_size"], tuple(layers))
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from err

    def save(self, path: str | Path) -> Path:
        """Write the architecture as indented JSON; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Architecture:
        """Read and validate a JSON file.

        Raises:
            ValueError: invalid JSON or an invalid architecture; the message names the file (and the layer).
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON: {err}") from err
        return cls.from_dict(data, source=str(path))


PACKAGE_DATA = ("architectures/*.json",)
"""The shipped architectures this module reads (a code dependency of every stage that imports it)."""


def _shipped_dir() -> Any:
    return resources.files("effbert.methods.efficientbert").joinpath("architectures")


def list_architectures() -> list[str]:
    """Names of the architectures shipped in ``effbert/methods/efficientbert/architectures/`` (file stems, sorted)."""
    folder = _shipped_dir()
    if not folder.is_dir():
        return []
    return sorted(entry.name[: -len(".json")] for entry in folder.iterdir() if entry.name.endswith(".json"))


def load_architecture(name_or_path: str | Path) -> Architecture:
    """Load a shipped architecture by name (``"efficientbert"``) or any JSON file by path.

    An existing path wins over a shipped name.

    Raises:
        ValueError: neither an existing file nor a shipped name, or an invalid architecture.
    """
    path = Path(name_or_path)
    if path.is_file():
        return Architecture.load(path)
    name = str(name_or_path)
    if name in list_architectures():
        shipped = _shipped_dir().joinpath(f"{name}.json")
        with resources.as_file(shipped) as file:
            return Architecture.load(file)
    raise ValueError(f"no architecture file {name!r} and no shipped architecture of that name: {list_architectures()}")
