"""Kaldi's endpointing rules (``OnlineEndpointConfig``) for streaming recognition.

An endpoint is detected when any rule fires. A rule looks at the best path so
far: its trailing silence (frames whose phone is a silence phone, counted back
from the last frame), whether it contains anything but silence, the utterance
length, and the *final relative cost* (best cost including final weights minus
best cost without them; inf when no surviving token is in a final state, 0
when the best token is final). Kaldi's defaults:

======  =====================  =====================  =================  ====================
rule    must contain speech    min trailing silence   max relative cost  min utterance length
======  =====================  =====================  =================  ====================
rule1   no                     5.0 s                  inf                0
rule2   yes                    0.5 s                  2.0                0
rule3   yes                    1.0 s                  8.0                0
rule4   yes                    2.0 s                  inf                0
rule5   no                     0                      inf                20.0 s
======  =====================  =====================  =================  ====================

>>> cfg = EndpointConfig()
>>> endpoint_detected(cfg, num_frames=300, trailing_silence_frames=60, contains_nonsilence=True,
...                   final_relative_cost=0.0, frame_shift_s=0.01)   # rule2
True
>>> endpoint_detected(cfg, num_frames=300, trailing_silence_frames=60, contains_nonsilence=True,
...                   final_relative_cost=float("inf"), frame_shift_s=0.01)
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "EndpointConfig",
    "EndpointRule",
    "endpoint_detected",
    "final_relative_cost",
    "trailing_silence_frames",
]


@dataclass(frozen=True)
class EndpointRule:
    """One rule (Kaldi's ``OnlineEndpointRule``); times in seconds."""

    must_contain_nonsilence: bool = True
    min_trailing_silence_s: float = 1.0
    max_relative_cost: float = math.inf
    min_utterance_length_s: float = 0.0

    def activated(
        self, *, trailing_silence_s: float, contains_nonsilence: bool,
        relative_cost: float, utterance_length_s: float,
    ) -> bool:  # fmt: skip
        return (
            (contains_nonsilence or not self.must_contain_nonsilence)
            and trailing_silence_s >= self.min_trailing_silence_s
            and relative_cost <= self.max_relative_cost
            and utterance_length_s >= self.min_utterance_length_s
        )


@dataclass(frozen=True)
class EndpointConfig:
    """The five rules with Kaldi's default values (see the module docstring)."""

    rule1: EndpointRule = field(default_factory=lambda: EndpointRule(False, 5.0, math.inf, 0.0))
    rule2: EndpointRule = field(default_factory=lambda: EndpointRule(True, 0.5, 2.0, 0.0))
    rule3: EndpointRule = field(default_factory=lambda: EndpointRule(True, 1.0, 8.0, 0.0))
    rule4: EndpointRule = field(default_factory=lambda: EndpointRule(True, 2.0, math.inf, 0.0))
    rule5: EndpointRule = field(default_factory=lambda: EndpointRule(False, 0.0, math.inf, 20.0))

    @property
    def rules(self) -> tuple[EndpointRule, ...]:
        return (self.rule1, self.rule2, self.rule3, self.rule4, self.rule5)


def trailing_silence_frames(is_silence: np.ndarray) -> int:
    """Number of silence frames at the end of a per-frame boolean mask."""
    mask = np.asarray(is_silence, dtype=bool)
    nonsil = np.flatnonzero(~mask)
    return int(mask.shape[0] - (nonsil[-1] + 1 if nonsil.size else 0))


def final_relative_cost(token_costs: np.ndarray, token_final_costs: np.ndarray) -> float:
    """Kaldi's ``FinalRelativeCost`` from the surviving tokens' costs and their states'
    final costs (inf when not final)."""
    costs = np.asarray(token_costs, dtype=np.float64)
    if costs.size == 0:
        return math.inf
    with_final = costs + np.asarray(token_final_costs, dtype=np.float64)
    best_final = float(with_final.min())
    if not math.isfinite(best_final):
        return math.inf
    return best_final - float(costs.min())


def endpoint_detected(
    config: EndpointConfig,
    *,
    num_frames: int,
    trailing_silence_frames: int,
    contains_nonsilence: bool,
    final_relative_cost: float,
    frame_shift_s: float,
) -> bool:
    """True when any rule of ``config`` fires (Kaldi's ``EndpointDetected``)."""
    length_s = num_frames * frame_shift_s
    silence_s = trailing_silence_frames * frame_shift_s
    return any(
        rule.activated(
            trailing_silence_s=silence_s,
            contains_nonsilence=contains_nonsilence,
            relative_cost=final_relative_cost,
            utterance_length_s=length_s,
        )
        for rule in config.rules
    )
