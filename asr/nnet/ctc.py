"""CTC helpers: batched greedy decoding (argmax, merge repeats, drop blanks) and loss.

Token 0 is the blank. Decoding is vectorized over the batch and the frames; the
only Python loop is over utterances, to split the result into lists.

>>> import torch
>>> ids = torch.tensor([[0, 3, 3, 0, 3, 5, 5, 0], [2, 2, 0, 1, 0, 0, 0, 0]])
>>> log_probs = torch.nn.functional.one_hot(ids, 6).float().log()
>>> greedy_decode(log_probs, torch.tensor([8, 4]))
[[3, 3, 5], [2, 1]]
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from asr.errors import ModelError

__all__ = ["ctc_loss_sum", "greedy_decode", "greedy_decode_with_frames"]


def _emission_mask(
    log_probs: torch.Tensor, lengths: torch.Tensor, blank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best token per frame ``(B, T)`` and the mask of frames that emit a token."""
    if log_probs.dim() != 3:
        raise ModelError(
            f"log_probs must be (batch, num_frames, num_tokens), got {tuple(log_probs.shape)}"
        )
    batch, num_frames, _ = log_probs.shape
    lengths = torch.as_tensor(lengths, device=log_probs.device)
    if lengths.shape != (batch,) or bool((lengths < 0).any()) or bool((lengths > num_frames).any()):
        raise ModelError(
            f"lengths must be ({batch},) within [0, {num_frames}], got {lengths.tolist()}"
        )
    best = log_probs.argmax(dim=-1)
    previous = F.pad(best[:, :-1], (1, 0), value=-1)
    valid = torch.arange(num_frames, device=best.device).unsqueeze(0) < lengths.unsqueeze(1)
    return best, (best != previous) & (best != blank) & valid


def greedy_decode(
    log_probs: torch.Tensor, lengths: torch.Tensor, *, blank: int = 0
) -> list[list[int]]:
    """Greedy CTC decoding of ``log_probs: (batch, num_frames, num_tokens)``; one id list per utterance."""
    best, emit = _emission_mask(log_probs, lengths, blank)
    counts = emit.sum(dim=1).tolist()
    tokens = best[emit].tolist()
    out, start = [], 0
    for count in counts:
        out.append(tokens[start : start + count])
        start += count
    return out


def greedy_decode_with_frames(
    log_probs: torch.Tensor, lengths: torch.Tensor, *, blank: int = 0
) -> list[list[tuple[int, int]]]:
    """Like :func:`greedy_decode`, with the (output) frame where each token starts: ``[(token, frame)]``."""
    best, emit = _emission_mask(log_probs, lengths, blank)
    rows, frames = emit.nonzero(as_tuple=True)
    tokens = best[rows, frames].tolist()
    counts = emit.sum(dim=1).tolist()
    frames_list = frames.tolist()
    out, start = [], 0
    for count in counts:
        out.append(
            list(
                zip(tokens[start : start + count], frames_list[start : start + count], strict=True)
            )
        )
        start += count
    return out


def ctc_loss_sum(
    log_probs: torch.Tensor,
    out_lengths: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    *,
    blank: int = 0,
) -> torch.Tensor:
    """Summed CTC loss over the batch; ``log_probs: (batch, num_frames, num_tokens)``, ``targets: (batch, max_len)``.

    Utterances too short for their targets contribute zero (``zero_infinity``).
    """
    return F.ctc_loss(
        log_probs.transpose(0, 1),
        targets,
        out_lengths,
        target_lengths,
        blank=blank,
        reduction="sum",
        zero_infinity=True,
    )
