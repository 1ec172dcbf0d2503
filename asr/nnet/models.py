"""Neural acoustic models: a TDNN frame classifier (DNN-HMM) and an LSTM/BiLSTM CTC model.

Both map ``feats: (batch, num_frames, input_dim)`` float32 and ``lengths: (batch,)``
int64 to ``(log_probs, out_lengths)``, where ``log_probs: (batch, num_frames_out,
num_out)`` are log-softmax outputs and ``out_lengths: (batch,)`` the valid output
frames per utterance (frames past an utterance's length are padding, not zeros).

Context is bounded and stated: ``left_context`` / ``right_context`` are in input
frames. At utterance edges the first and last input frames are replicated (as
Kaldi's frame splicing does), so every input frame of a TDNN gets one output.
Streaming models implement ``forward_chunk(chunk_feats, state, is_final=False)``:
feeding an utterance in chunks of any sizes and concatenating the outputs gives
the full-utterance forward pass (outputs are delayed by ``right_context`` frames
until ``is_final`` flushes them).

The DNN-HMM contract lives here too: :func:`estimate_log_priors` from pdf counts
and :func:`dnn_log_likelihoods` (log-posteriors minus log-priors, unscaled).

>>> import torch
>>> model = TdnnModel(TdnnConfig(input_dim=13, num_pdfs=5, hidden_dim=16, num_layers=2, context=(2, 1)))
>>> log_probs, out_lengths = model(torch.zeros(2, 7, 13), torch.tensor([7, 4]))
>>> tuple(log_probs.shape), out_lengths.tolist(), (model.left_context, model.right_context)
((2, 7, 5), [7, 4], (2, 1))
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from asr.errors import ModelError

__all__ = [
    "CtcConfig",
    "CtcModel",
    "ConvStackState",
    "CtcState",
    "TdnnConfig",
    "TdnnModel",
    "build_model",
    "dnn_log_likelihoods",
    "estimate_log_priors",
    "model_spec",
]


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class TdnnConfig:
    """A TDNN frame classifier over pdf-ids.

    ``context=(left, right)`` is the total input context in frames; it is spread over
    the layers by ``layer_contexts`` (one ``(left, right)`` per layer, summing to
    ``context``); when empty, the first layer takes up to 2 frames each side and the
    rest goes one frame per side to the following layers.
    """

    input_dim: int
    num_pdfs: int
    hidden_dim: int = 512
    num_layers: int = 5
    context: tuple[int, int] = (5, 5)
    layer_contexts: tuple[tuple[int, int], ...] = ()
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_positive(self, ("input_dim", "num_pdfs", "hidden_dim", "num_layers"))
        object.__setattr__(self, "context", tuple(int(c) for c in self.context))
        object.__setattr__(
            self, "layer_contexts", tuple((int(a), int(b)) for a, b in self.layer_contexts)
        )
        if len(self.context) != 2 or min(self.context) < 0:
            raise ModelError(f"TdnnConfig.context must be (left, right) >= 0, got {self.context}")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"TdnnConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.layer_contexts:
            if len(self.layer_contexts) != self.num_layers:
                raise ModelError(
                    f"TdnnConfig.layer_contexts has {len(self.layer_contexts)} entries "
                    f"for num_layers={self.num_layers}"
                )
            if any(min(lc) < 0 for lc in self.layer_contexts):
                raise ModelError(f"TdnnConfig.layer_contexts must be >= 0: {self.layer_contexts}")
            sums = tuple(sum(lc[i] for lc in self.layer_contexts) for i in (0, 1))
            if sums != self.context:
                raise ModelError(
                    f"TdnnConfig.layer_contexts sum to {sums}, not context={self.context}"
                )

    def resolved_layer_contexts(self) -> tuple[tuple[int, int], ...]:
        """The per-layer ``(left, right)`` contexts actually used."""
        if self.layer_contexts:
            return self.layer_contexts
        sides = []
        for total in self.context:
            first = min(total, 2)
            rest = total - first
            per_layer = [first] + [0] * (self.num_layers - 1)
            if self.num_layers == 1:
                per_layer[0] += rest
            else:
                for i in range(rest):
                    per_layer[1 + i % (self.num_layers - 1)] += 1
            sides.append(per_layer)
        return tuple(zip(sides[0], sides[1], strict=True))


@dataclass(frozen=True)
class CtcConfig:
    """An (optionally conv-fronted) LSTM or BiLSTM with a CTC output layer.

    ``num_tokens`` counts the blank, which is token 0. ``conv_channels > 0`` adds a
    front of ``len(conv_strides)`` 1-D convolutions over time (kernel ``conv_kernel``,
    ReLU), subsampling frames by ``prod(conv_strides)``. ``bidirectional=False`` gives
    the streaming variant (``forward_chunk``).
    """

    input_dim: int
    num_tokens: int
    hidden: int = 320
    num_layers: int = 3
    bidirectional: bool = True
    conv_channels: int = 0
    conv_kernel: int = 3
    conv_strides: tuple[int, ...] = (1, 2)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_positive(self, ("input_dim", "hidden", "num_layers", "conv_kernel"))
        object.__setattr__(self, "conv_strides", tuple(int(s) for s in self.conv_strides))
        if self.num_tokens < 2:
            raise ModelError(
                f"CtcConfig.num_tokens must be >= 2 (blank + 1), got {self.num_tokens}"
            )
        if self.conv_channels < 0 or any(s < 1 for s in self.conv_strides):
            raise ModelError(
                f"CtcConfig conv_channels={self.conv_channels}, conv_strides={self.conv_strides} invalid"
            )
        if self.conv_channels > 0 and not self.conv_strides:
            raise ModelError("CtcConfig.conv_strides is empty while conv_channels > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"CtcConfig.dropout must be in [0, 1), got {self.dropout}")

    @property
    def subsampling(self) -> int:
        """Input frames per output frame."""
        return math.prod(self.conv_strides) if self.conv_channels > 0 else 1


def _check_positive(cfg: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 1:
            raise ModelError(f"{type(cfg).__name__}.{name} must be a positive int, got {value!r}")


# --------------------------------------------------------------------------- conv stack


@dataclass(frozen=True)
class ConvStackState:
    """Streaming state of a conv stack: per-layer input buffers and the last input frame."""

    buffers: tuple[torch.Tensor, ...]
    last_frame: torch.Tensor


def _edge_pad(feats: torch.Tensor, lengths: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Replicate each utterance's first/last valid frame: ``(B, T, D) -> (B, left + T + right, D)``."""
    batch, num_frames, dim = feats.shape
    positions = torch.arange(-left, num_frames + right, device=feats.device)
    last = (lengths.to(feats.device) - 1).clamp(min=0).unsqueeze(1)
    index = torch.minimum(positions.clamp(min=0).unsqueeze(0), last)
    return torch.gather(feats, 1, index.unsqueeze(-1).expand(batch, -1, dim))


def _reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each utterance's first ``lengths[b]`` frames of ``x: (B, T, H)``; padding stays put."""
    batch, num_frames, dim = x.shape
    frames = torch.arange(num_frames, device=x.device).unsqueeze(0)
    lens = lengths.to(x.device).unsqueeze(1)
    index = torch.where(frames < lens, lens - 1 - frames, frames)
    return torch.gather(x, 1, index.unsqueeze(-1).expand(batch, num_frames, dim))


class _ConvStack(nn.Module):
    """Unpadded 1-D convolutions over time, with edge replication only at the input.

    Layer ``i`` has ``(left_i, right_i)`` context (kernel ``left_i + right_i + 1``) and a
    stride; the stack's context in input frames is the sum of each layer's context
    times the product of the strides before it.
    """

    def __init__(
        self,
        *,
        input_dim: int,
        dims: list[int],
        contexts: list[tuple[int, int]],
        strides: list[int],
        layer_norm: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.contexts = [tuple(c) for c in contexts]
        self.strides = list(strides)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        in_dim = input_dim
        for out_dim, (left, right), stride in zip(dims, contexts, strides, strict=True):
            self.convs.append(nn.Conv1d(in_dim, out_dim, left + right + 1, stride=stride))
            self.norms.append(nn.LayerNorm(out_dim) if layer_norm else nn.Identity())
            in_dim = out_dim
        self.out_dim = in_dim
        self.dropout = nn.Dropout(dropout)
        rate, left_total, right_total = 1, 0, 0
        for (left, right), stride in zip(contexts, strides, strict=True):
            left_total += left * rate
            right_total += right * rate
            rate *= stride
        self.left_context, self.right_context = left_total, right_total

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for ``lengths`` input frames (after edge padding)."""
        out = lengths + self.left_context + self.right_context
        for (left, right), stride in zip(self.contexts, self.strides, strict=True):
            out = torch.div(out - left - right - 1, stride, rounding_mode="floor") + 1
        return torch.where(lengths > 0, out, torch.zeros_like(out))

    def _layers(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, dim, N)`` already padded -> ``(B, out_dim, N_out)``."""
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = torch.relu(conv(x))
            x = self.dropout(norm(x.transpose(1, 2)).transpose(1, 2))
        return x

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        padded = _edge_pad(feats, lengths, self.left_context, self.right_context)
        out = self._layers(padded.transpose(1, 2)).transpose(1, 2)
        return out, self.output_lengths(lengths)

    def forward_chunk(
        self, chunk: torch.Tensor, state: ConvStackState | None, is_final: bool
    ) -> tuple[torch.Tensor, ConvStackState | None]:
        """Feed ``chunk: (B, n, dim)``; return the newly computable outputs ``(B, n_out, out_dim)``."""
        if state is None:
            if chunk.shape[1] == 0:
                return chunk.new_zeros(chunk.shape[0], 0, self.out_dim), None
            first = chunk[:, :1]
            chunk = torch.cat([first.expand(-1, self.left_context, -1), chunk], dim=1)
            buffers = tuple(
                chunk.new_zeros(chunk.shape[0], conv.in_channels, 0) for conv in self.convs
            )
            state = ConvStackState(buffers=buffers, last_frame=first)
        last_frame = chunk[:, -1:] if chunk.shape[1] else state.last_frame
        if is_final:
            chunk = torch.cat([chunk, last_frame.expand(-1, self.right_context, -1)], dim=1)
        x = chunk.transpose(1, 2)
        new_buffers = []
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            buf = torch.cat([state.buffers[i], x], dim=2)
            kernel, stride = conv.kernel_size[0], conv.stride[0]
            num_out = (buf.shape[2] - kernel) // stride + 1 if buf.shape[2] >= kernel else 0
            if num_out > 0:
                x = torch.relu(conv(buf[:, :, : (num_out - 1) * stride + kernel]))
                x = self.dropout(norm(x.transpose(1, 2)).transpose(1, 2))
                buf = buf[:, :, num_out * stride :]
            else:
                x = buf.new_zeros(buf.shape[0], conv.out_channels, 0)
            new_buffers.append(buf)
        return x.transpose(1, 2), ConvStackState(buffers=tuple(new_buffers), last_frame=last_frame)


# --------------------------------------------------------------------------- TDNN


class TdnnModel(nn.Module):
    """TDNN frame classifier: conv layers (ReLU, LayerNorm) and a pdf output layer.

    ``forward(feats, lengths) -> (log_probs (B, T, num_pdfs), lengths)``: one output per
    input frame. Streams with ``forward_chunk`` (output delayed by ``right_context``).
    """

    kind = "tdnn"

    def __init__(self, config: TdnnConfig) -> None:
        super().__init__()
        self.config = config
        contexts = list(config.resolved_layer_contexts())
        self.stack = _ConvStack(
            input_dim=config.input_dim,
            dims=[config.hidden_dim] * config.num_layers,
            contexts=contexts,
            strides=[1] * config.num_layers,
            layer_norm=True,
            dropout=config.dropout,
        )
        self.output = nn.Linear(config.hidden_dim, config.num_pdfs)

    @property
    def left_context(self) -> int:
        return self.stack.left_context

    @property
    def right_context(self) -> int:
        return self.stack.right_context

    @property
    def num_outputs(self) -> int:
        return self.config.num_pdfs

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_feats(feats, lengths, self.config.input_dim)
        hidden, out_lengths = self.stack(feats, lengths)
        return F.log_softmax(self.output(hidden), dim=-1), out_lengths

    def forward_chunk(
        self,
        chunk_feats: torch.Tensor,
        state: ConvStackState | None = None,
        *,
        is_final: bool = False,
    ) -> tuple[torch.Tensor, ConvStackState | None]:
        """Stream ``chunk_feats: (B, n, input_dim)``; start with ``state=None``.

        Returns log-probs for the frames that became computable and the new state;
        pass ``is_final=True`` with the last chunk (possibly empty) to flush the last
        ``right_context`` frames.
        """
        _check_chunk(chunk_feats, self.config.input_dim)
        hidden, new_state = self.stack.forward_chunk(chunk_feats, state, is_final)
        return F.log_softmax(self.output(hidden), dim=-1), new_state


# --------------------------------------------------------------------------- CTC


@dataclass(frozen=True)
class CtcState:
    """Streaming state of a unidirectional :class:`CtcModel`."""

    conv: ConvStackState | None
    hidden: tuple[torch.Tensor, torch.Tensor] | None


class CtcModel(nn.Module):
    """(Conv front +) LSTM/BiLSTM + linear + log-softmax over tokens (blank = 0).

    ``left_context`` / ``right_context`` are the conv front's, in input frames; a
    bidirectional model has unbounded right context (``right_context`` is None) and
    cannot stream.
    """

    kind = "ctc"

    def __init__(self, config: CtcConfig) -> None:
        super().__init__()
        self.config = config
        self.front: _ConvStack | None = None
        lstm_in = config.input_dim
        if config.conv_channels > 0:
            half = (config.conv_kernel - 1) // 2
            context = (half, config.conv_kernel - 1 - half)
            self.front = _ConvStack(
                input_dim=config.input_dim,
                dims=[config.conv_channels] * len(config.conv_strides),
                contexts=[context] * len(config.conv_strides),
                strides=list(config.conv_strides),
                layer_norm=True,
                dropout=0.0,
            )
            lstm_in = config.conv_channels
        # Unpacked recurrences throughout: packed sequences make the CPU backward pass
        # quadratic in num_frames (a full-size zero gradient per time step). A
        # unidirectional LSTM can ignore the padded tail; a bidirectional one runs its
        # backward direction over each utterance reversed within its own length.
        self.lstm: nn.LSTM | None = None
        self.forward_layers = nn.ModuleList()
        self.backward_layers = nn.ModuleList()
        if config.bidirectional:
            for i in range(config.num_layers):
                layer_in = lstm_in if i == 0 else 2 * config.hidden
                self.forward_layers.append(nn.LSTM(layer_in, config.hidden, batch_first=True))
                self.backward_layers.append(nn.LSTM(layer_in, config.hidden, batch_first=True))
        else:
            self.lstm = nn.LSTM(
                lstm_in,
                config.hidden,
                num_layers=config.num_layers,
                batch_first=True,
                dropout=config.dropout if config.num_layers > 1 else 0.0,
            )
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(
            config.hidden * (2 if config.bidirectional else 1), config.num_tokens
        )

    @property
    def left_context(self) -> int:
        return self.front.left_context if self.front is not None else 0

    @property
    def right_context(self) -> int | None:
        if self.config.bidirectional:
            return None
        return self.front.right_context if self.front is not None else 0

    @property
    def num_outputs(self) -> int:
        return self.config.num_tokens

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames per utterance for ``lengths`` input frames."""
        return self.front.output_lengths(lengths) if self.front is not None else lengths

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_feats(feats, lengths, self.config.input_dim)
        if self.front is not None:
            x, out_lengths = self.front(feats, lengths)
        else:
            x, out_lengths = feats, lengths
        if self.lstm is not None:
            out, _ = self.lstm(x)
        else:
            out = x
            for i, (fw, bw) in enumerate(
                zip(self.forward_layers, self.backward_layers, strict=True)
            ):
                if i > 0:
                    out = self.dropout(out)
                ahead, _ = fw(out)
                behind, _ = bw(_reverse_within_lengths(out, out_lengths))
                out = torch.cat([ahead, _reverse_within_lengths(behind, out_lengths)], dim=-1)
        return F.log_softmax(self.output(self.dropout(out)), dim=-1), out_lengths

    def forward_chunk(
        self, chunk_feats: torch.Tensor, state: CtcState | None = None, *, is_final: bool = False
    ) -> tuple[torch.Tensor, CtcState]:
        """Stream a unidirectional model: conv buffers and LSTM ``(h, c)`` are carried."""
        if self.config.bidirectional:
            raise ModelError("a bidirectional CtcModel cannot stream; use bidirectional=False")
        _check_chunk(chunk_feats, self.config.input_dim)
        conv_state, hidden = (None, None) if state is None else (state.conv, state.hidden)
        x = chunk_feats
        if self.front is not None:
            x, conv_state = self.front.forward_chunk(chunk_feats, conv_state, is_final)
        if x.shape[1] > 0:
            x, hidden = self.lstm(x, hidden)
        else:
            x = x.new_zeros(x.shape[0], 0, self.config.hidden)
        log_probs = F.log_softmax(self.output(self.dropout(x)), dim=-1)
        return log_probs, CtcState(conv=conv_state, hidden=hidden)


# --------------------------------------------------------------------------- helpers


def _check_feats(feats: torch.Tensor, lengths: torch.Tensor, input_dim: int) -> None:
    if feats.dim() != 3 or feats.shape[2] != input_dim:
        raise ModelError(
            f"feats must be (batch, num_frames, {input_dim}), got {tuple(feats.shape)}"
        )
    if lengths.shape != (feats.shape[0],):
        raise ModelError(f"lengths must be ({feats.shape[0]},), got {tuple(lengths.shape)}")


def _check_chunk(chunk: torch.Tensor, input_dim: int) -> None:
    if chunk.dim() != 3 or chunk.shape[2] != input_dim:
        raise ModelError(
            f"chunk must be (batch, num_frames, {input_dim}), got {tuple(chunk.shape)}"
        )


_MODEL_CLASSES: dict[str, tuple[type[nn.Module], type]] = {
    "tdnn": (TdnnModel, TdnnConfig),
    "ctc": (CtcModel, CtcConfig),
}


def model_spec(model: nn.Module) -> dict[str, Any]:
    """``{"kind": ..., "config": {...}}``: everything needed to rebuild ``model``'s architecture."""
    kind = getattr(model, "kind", None)
    if kind not in _MODEL_CLASSES:
        raise ModelError(f"not an asr.nnet model: {type(model).__name__}")
    return {"kind": kind, "config": dataclasses.asdict(model.config)}


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a model (fresh weights) from :func:`model_spec`'s output."""
    kind = spec.get("kind")
    if kind not in _MODEL_CLASSES:
        raise ModelError(f"unknown model kind {kind!r}; expected one of {sorted(_MODEL_CLASSES)}")
    model_cls, config_cls = _MODEL_CLASSES[kind]
    fields = dict(spec.get("config", {}))
    for key, value in fields.items():
        if isinstance(value, list):
            fields[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    try:
        return model_cls(config_cls(**fields))
    except TypeError as err:
        raise ModelError(f"bad {kind} model config {fields}: {err}") from err


def estimate_log_priors(pdf_counts: np.ndarray, *, floor: float = 1e-10) -> np.ndarray:
    """Log pdf priors ``(num_pdfs,)`` float32 from alignment counts, priors floored at ``floor``.

    Priors are ``counts / sum(counts)``; a pdf never seen gets ``log(floor)``.
    """
    counts = np.asarray(pdf_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ModelError(f"pdf_counts must be a non-empty vector, got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or counts.sum() <= 0:
        raise ModelError("pdf_counts must be finite, non-negative and not all zero")
    if not 0.0 < floor < 1.0:
        raise ModelError(f"prior floor must be in (0, 1), got {floor}")
    priors = np.maximum(counts / counts.sum(), floor)
    return np.log(priors).astype(np.float32)


@torch.no_grad()
def dnn_log_likelihoods(
    model: nn.Module, feats: np.ndarray | torch.Tensor, *, log_priors: np.ndarray | torch.Tensor
) -> np.ndarray:
    """Pseudo log-likelihoods ``log_post - log_prior``: ``(num_frames, num_pdfs)`` float32.

    ``feats: (num_frames, input_dim)``. No acoustic scale is applied (the decoder
    applies it). The model is put in eval mode.
    """
    feats_t = torch.as_tensor(np.asarray(feats, dtype=np.float32))
    priors_t = torch.as_tensor(np.asarray(log_priors, dtype=np.float32))
    if feats_t.dim() != 2 or feats_t.shape[0] == 0:
        raise ModelError(f"feats must be (num_frames > 0, input_dim), got {tuple(feats_t.shape)}")
    if priors_t.shape != (model.num_outputs,):
        raise ModelError(
            f"log_priors has shape {tuple(priors_t.shape)}, model has {model.num_outputs} outputs"
        )
    model.eval()
    device = next(model.parameters()).device
    log_post, _ = model(feats_t.unsqueeze(0).to(device), torch.tensor([feats_t.shape[0]]))
    return (log_post[0].cpu() - priors_t).numpy()
