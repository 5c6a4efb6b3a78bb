"""PyTorch EfficientBERT student (Dong et al., 2021), in one file as transformers' model files are.

Data flow: `EffBertEmbeddings` (MobileBERT-style trigram token embedding projected to H, plus learned positions
and segments) -> L x `EffBertLayer` (post-LN self-attention `EffBertAttention`, then `EffBertMLP`: a stack of MLP
units ``h = LayerNorm(h + dropout(f(h)))`` running the layer's compiled searched expression ``f``) -> optional
`EffBertPooler` -> task heads.

Attribute names follow BERT where a module has a BERT counterpart (``embeddings.word_embeddings``,
``...attention.output.LayerNorm``, ``pooler.dense``), so BERT-style tooling (weight decay rules on
``LayerNorm.weight``) works unchanged. The one departure: query, key and value are ONE projection,
``attention.self.qkv`` (rows: query, then key, then value), a single matrix multiply instead of three; at batch 1 on
a CPU the three small multiplies cost a tenth of the forward pass (``effbert bench``). The attention function is
looked up in ``ALL_ATTENTION_FUNCTIONS`` by ``config._attn_implementation`` exactly as BERT's (``"sdpa"`` by default,
``"eager"`` for ``output_attentions``), so the score capture of `effbert.distill.teacher_signals` works unchanged.

At inference on a CPU in fp32, every linear layer runs on `kernels` (oneDNN; an MLP unit's with the activation or
residual add that follows it inside the same call); training and every other setting run the eager composite.

Every MLP unit owns ``intermediate`` (W1: max_width x H, b1) and ``output`` (W2: H x max_width, b2) Linear layers and
a LayerNorm; a forward pass uses the first ``width`` intermediate neurons (weight slicing) of the first ``units``
units. A compact model owns exactly what it uses; a supernet (``config.max_ffn_units``/``max_ffn_width`` set) owns
the maximum and is re-sliced through `supernet`. Attention mask convention: Hugging Face, 1 = keep,
0 = padding (the official code's mask is inverted).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.bert.modeling_bert import eager_attention_forward

from effbert.methods.efficientbert import kernels
from effbert.methods.efficientbert.configuration_effbert import EffBertConfig
from effbert.methods.efficientbert.expr import CompiledExpr, compile_expr, parse

__all__ = [
    "EffBertAttention",
    "EffBertEmbeddings",
    "EffBertEncoder",
    "EffBertForQuestionAnswering",
    "EffBertForSequenceClassification",
    "EffBertLayer",
    "EffBertMLP",
    "EffBertMLPUnit",
    "EffBertModel",
    "EffBertPooler",
    "EffBertPreTrainedModel",
    "EffBertSelfAttention",
    "EffBertSelfOutput",
]


class EffBertEmbeddings(nn.Module):
    """Trigram token embedding (MobileBERT) + learned position + segment embeddings, LayerNorm, dropout.

    The 128-d embeddings of tokens i+1, i and i-1 (zeros beyond the sequence ends) are concatenated (3 x 128 = 384)
    and projected to H by ``embedding_transformation``.
    """

    def __init__(self, config: EffBertConfig) -> None:
        super().__init__()
        self.embedding_size = config.embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.embedding_transformation = kernels.FusedLinear(3 * config.embedding_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        # Non-snake-case name kept from BERT so that "LayerNorm.weight" no-decay rules and weight names carry over.
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
    ) -> Tensor:
        """Embed a batch.

        Args:
            input_ids: token ids (B, T); exactly one of ``input_ids`` and ``inputs_embeds`` must be given.
            token_type_ids: segment ids (B, T), zeros when None.
            position_ids: positions (B, T) or (1, T), ``0..T-1`` when None.
            inputs_embeds: token-table embeddings (B, T, embedding_size), i.e. before the trigram step.

        Returns:
            The embedding output (B, T, H).
        """
        if inputs_embeds is None:
            assert input_ids is not None  # checked by EffBertModel.forward
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, E)
        batch, length = inputs_embeds.shape[:2]
        next_tokens = F.pad(inputs_embeds[:, 1:], (0, 0, 0, 1))  # token i+1, zeros after the last position
        prev_tokens = F.pad(inputs_embeds[:, :-1], (0, 0, 1, 0))  # token i-1, zeros before the first position
        trigram = torch.cat([next_tokens, inputs_embeds, prev_tokens], dim=-1)  # (B, T, 3E)
        embeddings = self.embedding_transformation(trigram)  # (B, T, H)
        if position_ids is None:
            position_ids = torch.arange(length, device=inputs_embeds.device).unsqueeze(0)  # (1, T)
        if token_type_ids is None:
            token_type_ids = torch.zeros(batch, length, dtype=torch.long, device=inputs_embeds.device)
        embeddings = embeddings + self.position_embeddings(position_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(embeddings))


class EffBertSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention with one fused query/key/value projection ``qkv``.

    Same arithmetic as BERT's self-attention; ``qkv.weight`` (3H, H) stacks BERT's query, key and value weights.
    """

    def __init__(self, config: EffBertConfig, layer_idx: int) -> None:
        super().__init__()
        self.config = config
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.scaling = self.attention_head_size**-0.5
        self.qkv = kernels.FusedLinear(config.hidden_size, 3 * config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.is_causal = False  # read by transformers' sdpa function
        self.layer_idx = layer_idx

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(B, T, H) -> context (B, T, H) and the attention probabilities (B, heads, T, T) (None under sdpa)."""
        batch, length, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, length, 3, self.num_attention_heads, self.attention_head_size)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T, d)
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        context, probs = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.dropout.p if self.training else 0.0,
            scaling=self.scaling,
        )  # context (B, T, heads, d)
        return context.reshape(batch, length, -1), probs


class EffBertSelfOutput(nn.Module):
    """BERT's attention output ``LayerNorm(dropout(dense(c)) + h)``: ``BertSelfOutput`` with a `kernels.FusedLinear`."""

    def __init__(self, config: EffBertConfig) -> None:
        super().__init__()
        self.dense = kernels.FusedLinear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: Tensor, input_tensor: Tensor) -> Tensor:
        """The context ``hidden_states`` (B, T, H) and the block input ``input_tensor`` (B, T, H) -> (B, T, H)."""
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class EffBertAttention(nn.Module):
    """Post-LN attention block: `EffBertSelfAttention`, then `EffBertSelfOutput`."""

    def __init__(self, config: EffBertConfig, layer_idx: int) -> None:
        super().__init__()
        self.self = EffBertSelfAttention(config, layer_idx)
        self.output = EffBertSelfOutput(config)

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(B, T, H) -> the block output (B, T, H) and the attention probabilities (None under sdpa)."""
        context, probs = self.self(hidden_states, attention_mask)
        return self.output(context, hidden_states), probs


class EffBertMLPUnit(nn.Module):
    """One MLP unit: owns W1/b1 (``intermediate``), W2/b2 (``output``) and a LayerNorm; the expression comes in.

    Args:
        config: the model config (hidden size, dropout, LayerNorm epsilon).
        width: the number of intermediate neurons this unit owns (its maximum width).
    """

    def __init__(self, config: EffBertConfig, width: int) -> None:
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, width)  # W1 (width, H), b1 (width,)
        self.output = nn.Linear(width, config.hidden_size)  # W2 (H, width), b2 (H,)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: Tensor, expr: CompiledExpr, width: int) -> Tensor:
        """``LayerNorm(h + dropout(expr(h, W1[:width], b1[:width], W2[:, :width], b2)))``.

        Args:
            hidden_states: the unit input h (B, T, H).
            expr: the layer's compiled expression.
            width: how many intermediate neurons to use (<= the owned width).

        Returns:
            The unit output (B, T, H).
        """
        w1: Tensor = self.intermediate.weight  # (k_max, H)
        b1: Tensor = self.intermediate.bias  # (k_max,)
        w2: Tensor = self.output.weight  # (H, k_max)
        b2: Tensor = self.output.bias  # (H,)
        if width != w1.shape[0]:  # a supernet slice; a compact model skips the (no-op) slicing
            w1, b1, w2 = w1[:width], b1[:width], w2[:, :width]
        if not self.training:  # dropout is the identity: the residual add may run inside the last linear's kernel
            return self.LayerNorm(expr.residual(hidden_states, w1, b1, w2, b2))
        update = expr(hidden_states, w1, b1, w2, b2)  # (B, T, H)
        return self.LayerNorm(hidden_states + self.dropout(update))


class EffBertMLP(nn.Module):
    """A layer's searched MLP block: a stack of units sharing one expression, run on the first ``active_units``.

    Attributes:
        units: the owned units (``config.unit_capacity(layer_idx)``).
        max_width: intermediate neurons owned by every unit.
        expr: the compiled active expression (parameter-free).
        expr_text: the active expression string.
        active_units: how many units a forward pass runs.
        active_width: how many intermediate neurons each unit uses.
    """

    def __init__(self, config: EffBertConfig, layer_idx: int) -> None:
        super().__init__()
        assert config.ffn_exprs is not None and config.ffn_units is not None and config.ffn_widths is not None
        num_units, width = config.unit_capacity(layer_idx)
        self.gelu_approximate = config.gelu_approximate
        self.max_width = width
        self.units = nn.ModuleList(EffBertMLPUnit(config, width) for _ in range(num_units))
        self.expr_text = config.ffn_exprs[layer_idx]
        self.expr = compile_expr(parse(self.expr_text), self.gelu_approximate)
        self.active_units = 0
        self.active_width = 0
        self.set_active(config.ffn_exprs[layer_idx], config.ffn_units[layer_idx], config.ffn_widths[layer_idx])

    @property
    def capacity(self) -> tuple[int, int]:
        """``(units, width)`` this block owns."""
        return len(self.units), self.max_width

    def set_active(self, expr: str, units: int, width: int) -> None:
        """Select the expression, the number of units and the intermediate width for the next forward passes.

        The expression is not re-checked here (see `architecture.check_layer`); only the capacity is.

        Raises:
            ValueError: ``units`` or ``width`` outside ``1..capacity``.
        """
        max_units, max_width = self.capacity
        if not 1 <= units <= max_units:
            raise ValueError(f"units must be in 1..{max_units} (the owned units), got {units!r}")
        if not 1 <= width <= max_width:
            raise ValueError(f"width must be in 1..{max_width} (the owned intermediate neurons), got {width!r}")
        if expr != self.expr_text:
            self.expr = compile_expr(parse(expr), self.gelu_approximate).train(self.training)
            self.expr_text = expr
        self.active_units, self.active_width = units, width

    def forward(self, hidden_states: Tensor) -> Tensor:
        """Run the active units in order on (B, T, H); returns (B, T, H)."""
        for unit in itertools.islice(self.units, self.active_units):  # slicing a ModuleList would build a new one
            hidden_states = unit(hidden_states, self.expr, self.active_width)
        return hidden_states


class EffBertLayer(nn.Module):
    """One transformer layer: post-LN self-attention followed by the searched MLP block."""

    def __init__(self, config: EffBertConfig, layer_idx: int) -> None:
        super().__init__()
        self.attention = EffBertAttention(config, layer_idx)
        self.mlp = EffBertMLP(config, layer_idx)

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Run the layer.

        Args:
            hidden_states: (B, T, H).
            attention_mask: the prepared mask of the attention implementation (additive (B, 1, T, T) for eager).

        Returns:
            The layer output (B, T, H) and the attention probabilities (B, heads, T, T), None under sdpa.
        """
        attention_output, attention_probs = self.attention(hidden_states, attention_mask=attention_mask)
        return self.mlp(attention_output), attention_probs


class EffBertEncoder(nn.Module):
    """The stack of `EffBertLayer`s (attribute ``layer``, as in BERT)."""

    def __init__(self, config: EffBertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(EffBertLayer(config, i) for i in range(config.num_hidden_layers))

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> BaseModelOutputWithPooling:
        """Run all layers on the embedding output (B, T, H).

        Returns:
            ``last_hidden_state`` (B, T, H); ``hidden_states`` (L+1 tensors, the embedding output first) and
            ``attentions`` (L tensors (B, heads, T, T)) when asked for.
        """
        all_hidden: list[Tensor] = [hidden_states]
        all_attentions: list[Tensor] = []
        for index, layer in enumerate(self.layer):
            hidden_states, probs = layer(hidden_states, attention_mask)
            all_hidden.append(hidden_states)
            if output_attentions:
                if probs is None:
                    raise ValueError(
                        f"layer {index} returned no attention probabilities under attn_implementation="
                        "'sdpa'; load or build the model with attn_implementation='eager' to get attentions"
                    )
                all_attentions.append(probs)
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden_states,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None,
        )


class EffBertPooler(nn.Module):
    """BERT pooler: ``tanh(dense(h[:, 0]))`` on the [CLS] position."""

    def __init__(self, config: EffBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: Tensor) -> Tensor:
        """(B, T, H) -> (B, H)."""
        return self.activation(self.dense(hidden_states[:, 0]))


class EffBertPreTrainedModel(PreTrainedModel):
    """Base class: config class, weight initialisation (N(0, initializer_range), zero bias, unit LayerNorm)."""

    config_class = EffBertConfig
    config: EffBertConfig
    base_model_prefix = "effbert"
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise one module: Linear/Embedding weights N(0, initializer_range), biases 0, LayerNorm 1/0.

        The padding row of the token table starts at zero. transformers' ``init`` helpers skip tensors already
        loaded from a checkpoint.
        """
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)


def _check_inputs(input_ids: Tensor | None, inputs_embeds: Tensor | None) -> None:
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids and inputs_embeds")


class EffBertModel(EffBertPreTrainedModel):
    """The bare EfficientBERT encoder, with an optional pooler.

    Args:
        config: the model configuration.
        add_pooling_layer: whether to build the [CLS] pooler (dense + tanh).
    """

    def __init__(self, config: EffBertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = EffBertEmbeddings(config)
        self.encoder = EffBertEncoder(config)
        self.pooler = EffBertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        """The 128-d token table."""
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        """Replace the token table (its width must stay ``embedding_size``)."""
        assert isinstance(value, nn.Embedding)
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPooling | tuple[Tensor, ...]:
        """Encode a batch.

        Args:
            input_ids: token ids (B, T).
            attention_mask: (B, T), 1 = token, 0 = padding; None attends everywhere.
            token_type_ids: segment ids (B, T).
            position_ids: positions (B, T), ``0..T-1`` when None.
            inputs_embeds: token-table embeddings (B, T, embedding_size) instead of ``input_ids``.
            output_attentions: also return attention probabilities (needs ``attn_implementation="eager"``).
            output_hidden_states: also return the L+1 hidden states (embedding output first).
            return_dict: False returns a tuple of the non-None fields; default ``config.return_dict``.
            **kwargs: accepted for compatibility with transformers' callers and ignored.

        Returns:
            `BaseModelOutputWithPooling`: ``last_hidden_state`` (B, T, H), ``pooler_output`` (B, H) or None,
            ``hidden_states``, ``attentions``.

        Raises:
            ValueError: both or neither of ``input_ids`` and ``inputs_embeds``; attentions asked for under sdpa.
        """
        _check_inputs(input_ids, inputs_embeds)
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        if output_hidden_states is None:
            output_hidden_states = bool(self.config.output_hidden_states)
        embedding_output = self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
        )  # (B, T, H)
        mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
        )  # implementation-specific: additive (B, 1, T, T) for eager, boolean or None for sdpa
        outputs = self.encoder(
            embedding_output,
            attention_mask=mask,
            output_hidden_states=output_hidden_states,
            output_attentions=bool(output_attentions),
        )
        if self.pooler is not None:
            outputs.pooler_output = self.pooler(outputs.last_hidden_state)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        return outputs if return_dict else outputs.to_tuple()


class EffBertForSequenceClassification(EffBertPreTrainedModel):
    """EfficientBERT with dropout + a linear classifier on the pooled [CLS] output (GLUE).

    ``config.num_labels == 1`` (or ``problem_type="regression"``) makes it a regressor with MSE loss (STS-B).
    """

    def __init__(self, config: EffBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels or 2
        self.effbert = EffBertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput | tuple[Tensor, ...]:
        """Classify (or regress) a batch.

        Args:
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, output_attentions,
                output_hidden_states: as in `EffBertModel.forward`.
            labels: (B,) class ids, or float targets (B,) for regression / (B, num_labels) for multi-label.
            return_dict: False returns a tuple of the non-None fields.
            **kwargs: ignored.

        Returns:
            `SequenceClassifierOutput` with ``logits`` (B, num_labels) and ``loss`` when ``labels`` are given.
        """
        outputs = self.effbert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))  # (B, C)
        loss = None
        if labels is not None:
            loss = self._loss(logits, labels)
        result = SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        return result if return_dict else result.to_tuple()

    def _loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """MSE (regression), cross-entropy (single label) or BCE-with-logits (multi-label), as BERT infers it."""
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            if self.num_labels == 1:
                return MSELoss()(logits.squeeze(-1), labels.view(-1).to(logits.dtype))
            return MSELoss()(logits, labels.to(logits.dtype))
        if self.config.problem_type == "single_label_classification":
            return CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        return BCEWithLogitsLoss()(logits, labels.to(logits.dtype))


class EffBertForQuestionAnswering(EffBertPreTrainedModel):
    """EfficientBERT with a linear span head (start/end logits per token, SQuAD); no pooler."""

    def __init__(self, config: EffBertConfig) -> None:
        super().__init__(config)
        self.effbert = EffBertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)  # start and end logit per token
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        start_positions: Tensor | None = None,
        end_positions: Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> QuestionAnsweringModelOutput | tuple[Tensor, ...]:
        """Predict answer spans.

        Args:
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, output_attentions,
                output_hidden_states: as in `EffBertModel.forward`.
            start_positions: gold start token indices (B,); positions outside the sequence are ignored.
            end_positions: gold end token indices (B,).
            return_dict: False returns a tuple of the non-None fields.
            **kwargs: ignored.

        Returns:
            `QuestionAnsweringModelOutput` with ``start_logits``/``end_logits`` (B, T) and, given both position
            tensors, ``loss`` = mean of the start and end cross-entropies.
        """
        outputs = self.effbert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.qa_outputs(outputs.last_hidden_state)  # (B, T, 2)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))  # (B, T) each
        loss = None
        if start_positions is not None and end_positions is not None:
            ignored = start_logits.size(1)  # out-of-range gold positions are clamped here and ignored
            loss_fct = CrossEntropyLoss(ignore_index=ignored)
            start = start_positions.view(-1).clamp(0, ignored)
            end = end_positions.view(-1).clamp(0, ignored)
            loss = (loss_fct(start_logits, start) + loss_fct(end_logits, end)) / 2
        result = QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        return result if return_dict else result.to_tuple()


def register() -> None:
    """Register ``"effbert"`` with AutoConfig, AutoModel, AutoModelForSequenceClassification and
    AutoModelForQuestionAnswering. Runs when this file is imported; safe to call any number of times."""
    AutoConfig.register(EffBertConfig.model_type, EffBertConfig, exist_ok=True)
    AutoModel.register(EffBertConfig, EffBertModel, exist_ok=True)
    AutoModelForSequenceClassification.register(EffBertConfig, EffBertForSequenceClassification, exist_ok=True)
    AutoModelForQuestionAnswering.register(EffBertConfig, EffBertForQuestionAnswering, exist_ok=True)


register()
