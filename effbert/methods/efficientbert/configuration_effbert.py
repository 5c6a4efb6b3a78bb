"""EffBertConfig: the configuration of the EfficientBERT student (and of its weight-sharing supernet)."""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import PreTrainedConfig

from effbert.methods.efficientbert.architecture import Architecture, check_layer
from effbert.methods.efficientbert.expr.compile import GELU_APPROXIMATIONS

__all__ = ["VANILLA_EXPR", "EffBertConfig"]

VANILLA_EXPR = "linear(gelu(linear(x,wb1)),wb2)"
"""Default layer expression: the BERT FFN ``W2 gelu(W1 x + b1) + b2`` (no size id, so any units/width fit)."""


def _int_at_least(name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _probability(name: str, value: object) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


class EffBertConfig(PreTrainedConfig):
    r"""Configuration of an EfficientBERT student (Dong et al., 2021): a BERT encoder with a MobileBERT-style trigram
    embedding and, in every layer, a searched stack of MLP units instead of BERT's FFN.

    Layer ``l`` (0-based) runs post-LN multi-head attention, then ``ffn_units[l]`` units
    ``h = LayerNorm(h + dropout(f_l(h)))`` where ``f_l`` is the compiled ``ffn_exprs[l]`` evaluated with the first
    ``ffn_widths[l]`` intermediate neurons of the unit's weights. The defaults give the paper's H=540, 6-layer,
    12-head frame with one vanilla GELU unit of width H per layer (the search's starting point); build the searched
    models with `EffBertConfig.from_architecture`.

    Args:
        vocab_size (`int`, defaults to 30522): size of the WordPiece vocabulary (BERT uncased).
        hidden_size (`int`, defaults to 540): hidden size H of the encoder.
        num_hidden_layers (`int`, defaults to 6): number of transformer layers L.
        num_attention_heads (`int`, defaults to 12): attention heads per layer; must divide ``hidden_size``. Keep the
            teacher's head count (12 for BERT-base) for the attention-score distillation loss.
        embedding_size (`int`, defaults to 128): width of the token embedding table; the trigram input concatenates
            three of them (``3 * embedding_size``) before the projection to H.
        max_position_embeddings (`int`, defaults to 512): number of learned absolute positions.
        type_vocab_size (`int`, defaults to 2): number of segment (token type) ids.
        hidden_dropout_prob (`float`, defaults to 0.1): dropout on embeddings, attention output, MLP units, pooler.
        attention_probs_dropout_prob (`float`, defaults to 0.1): dropout on attention probabilities.
        layer_norm_eps (`float`, defaults to 1e-12): epsilon of every LayerNorm.
        initializer_range (`float`, defaults to 0.02): std of the normal initialisation of Linear and Embedding
            weights.
        pad_token_id (`int`, defaults to 0): padding token; its embedding row starts at zero and gets no gradient.
        ffn_exprs (`list[str]`, *optional*): one MLP expression per layer (see `expr`), with or without a size
            id; a size id must agree with that layer's units and width. Defaults to `VANILLA_EXPR` for every layer.
        ffn_units (`list[int]`, *optional*): active MLP units ``s`` (1..4) per layer. Defaults to 1 per layer.
        ffn_widths (`list[int]`, *optional*): active intermediate width ``k`` per layer, ``hidden_size // r`` with
            ``r`` in 1..4. Defaults to ``hidden_size`` per layer.
        max_ffn_units (`int`, *optional*): supernet capacity in units: when set, every layer owns this many units
            (a supernet uses 4) and runs the first ``ffn_units[l]``; None (default) builds a compact model whose
            layer ``l`` owns exactly ``ffn_units[l]`` units.
        max_ffn_width (`int`, *optional*): supernet capacity in intermediate neurons: when set, every unit owns this
            many (a supernet uses ``hidden_size``) and runs the first ``ffn_widths[l]``; None (default) gives each
            unit exactly ``ffn_widths[l]`` neurons.
        gelu_approximate (`str`, defaults to `"none"`): GELU flavour inside the expressions, ``"none"`` (exact erf
            GELU, as Hugging Face BERT teachers) or ``"tanh"`` (as the official EfficientBERT code, teacher included).
        **kwargs: forwarded to `PreTrainedConfig` (``num_labels``, ``problem_type``, ``attn_implementation``, ...).

    Raises:
        ValueError: any inconsistent value; the message quotes it.
    """

    model_type = "effbert"
    # The student is an encoder only; transformers' BERT attention modules read this flag.
    is_decoder: ClassVar[bool] = False

    vocab_size: int = 30522
    hidden_size: int = 540
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    embedding_size: int = 128
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int | None = 0
    ffn_exprs: list[str] | None = None
    ffn_units: list[int] | None = None
    ffn_widths: list[int] | None = None
    max_ffn_units: int | None = None
    max_ffn_width: int | None = None
    gelu_approximate: str = "none"

    def __post_init__(self, **kwargs: Any) -> None:
        layers = self.num_hidden_layers
        _int_at_least("num_hidden_layers", layers, 1)
        if self.ffn_exprs is None:
            self.ffn_exprs = [VANILLA_EXPR] * layers
        if self.ffn_units is None:
            self.ffn_units = [1] * layers
        if self.ffn_widths is None:
            self.ffn_widths = [self.hidden_size] * layers
        self.ffn_exprs = list(self.ffn_exprs)
        self.ffn_units = list(self.ffn_units)
        self.ffn_widths = list(self.ffn_widths)
        self._validate()
        super().__post_init__(**kwargs)

    def _validate(self) -> None:
        """Check every field; raise ValueError quoting the first offending value."""
        for name in ("vocab_size", "hidden_size", "num_attention_heads", "embedding_size", "max_position_embeddings"):
            _int_at_least(name, getattr(self, name), 1)
        _int_at_least("type_vocab_size", self.type_vocab_size, 1)
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) is not a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        _probability("hidden_dropout_prob", self.hidden_dropout_prob)
        _probability("attention_probs_dropout_prob", self.attention_probs_dropout_prob)
        for name in ("layer_norm_eps", "initializer_range"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id must be in [0, vocab_size={self.vocab_size}), got {self.pad_token_id!r}")
        if self.gelu_approximate not in GELU_APPROXIMATIONS:
            raise ValueError(f"gelu_approximate must be one of {GELU_APPROXIMATIONS}, got {self.gelu_approximate!r}")
        lists = {"ffn_exprs": self.ffn_exprs, "ffn_units": self.ffn_units, "ffn_widths": self.ffn_widths}
        for name, values in lists.items():
            if len(values or ()) != self.num_hidden_layers:
                raise ValueError(
                    f"{name} needs one entry per layer (num_hidden_layers={self.num_hidden_layers}), got {values!r}"
                )
        for name, capacity, values in (
            ("max_ffn_units", self.max_ffn_units, self.ffn_units),
            ("max_ffn_width", self.max_ffn_width, self.ffn_widths),
        ):
            if capacity is not None:
                _int_at_least(name, capacity, 1)
                if any(isinstance(v, int) and v > capacity for v in values or ()):
                    raise ValueError(f"{name}={capacity} is smaller than an active value in {values!r}")
        layer_specs = zip(self.ffn_exprs or (), self.ffn_units or (), self.ffn_widths or (), strict=True)
        for index, (expr, units, width) in enumerate(layer_specs):
            errors = check_layer(expr, units, width, self.hidden_size)
            if errors:
                raise ValueError(
                    f"layer {index} (expr {expr!r}, units {units!r}, width {width!r}): {'; '.join(errors)}"
                )

    def unit_capacity(self, layer: int) -> tuple[int, int]:
        """How many units layer ``layer`` owns and how many intermediate neurons each unit owns.

        Returns:
            ``(units, width)``: the supernet capacity when set, else the layer's active values.
        """
        assert self.ffn_units is not None and self.ffn_widths is not None  # filled in __post_init__
        units = self.max_ffn_units if self.max_ffn_units is not None else self.ffn_units[layer]
        width = self.max_ffn_width if self.max_ffn_width is not None else self.ffn_widths[layer]
        return units, width

    def architecture(self, name: str = "config") -> Architecture:
        """The active architecture described by ``hidden_size`` and the ``ffn_*`` lists."""
        assert self.ffn_exprs is not None and self.ffn_units is not None and self.ffn_widths is not None
        return Architecture.from_dict(
            {
                "name": name,
                "hidden_size": self.hidden_size,
                "layers": [
                    {"expr": e, "units": s, "width": k}
                    for e, s, k in zip(self.ffn_exprs, self.ffn_units, self.ffn_widths, strict=True)
                ],
            }
        )

    @classmethod
    def from_architecture(cls, architecture: Architecture, **kwargs: Any) -> EffBertConfig:
        """A compact config running ``architecture`` (hidden size, layer count and MLP blocks taken from it).

        Args:
            architecture: the architecture.
            **kwargs: any other field (``num_attention_heads``, ``max_ffn_units``, ``num_labels``, ...).

        Raises:
            ValueError: ``kwargs`` contradict the architecture, or an invalid field.
        """
        fixed = {
            "hidden_size": architecture.hidden_size,
            "num_hidden_layers": architecture.num_layers,
            "ffn_exprs": architecture.exprs,
            "ffn_units": architecture.units,
            "ffn_widths": architecture.widths,
        }
        clashes = {key: kwargs[key] for key in fixed if key in kwargs and kwargs[key] != fixed[key]}
        if clashes:
            raise ValueError(f"arguments {clashes} contradict architecture {architecture.name!r}")
        return cls(**{**kwargs, **fixed})
