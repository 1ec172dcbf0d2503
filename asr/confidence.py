"""Word confidences: an acoustic frame-posterior proxy (not lattice word posteriors).

Our decoder keeps no lattice, so word posteriors in Kaldi's sense
(``lattice-to-ctm-conf``) are not available. Instead, for every frame we
compute the posterior of the *phone* the best path is in, from the acoustic
scores alone:

    post_t(g) = sum_{pdf in phone g} softmax(acoustic_scale * log_likes[t])[pdf]

(the acoustic scale is the decoder's, as Kaldi scales acoustics when it turns
lattices into posteriors; pdfs are pooled by phone so that HMM states of the
same phone do not compete; for CTC the "phones" are the tokens). A word's
confidence is the mean of ``post_t`` over its frames; an utterance's is the
mean over its words (over all frames when no word was recognized). Values lie
in [0, 1]; a word whose frames are also well explained by other phones scores
low. The language model is ignored: this is a proxy, documented as such.

>>> import numpy as np
>>> pdf_to_group = np.array([0, 0, 1])  # pdfs 0 and 1 belong to one phone
>>> post = group_posteriors(np.log([[0.4, 0.4, 0.2], [0.1, 0.1, 0.8]]), pdf_to_group,
...                         acoustic_scale=1.0)
>>> np.round(post.astype(float), 2).tolist()
[[0.8, 0.2], [0.2, 0.8]]
>>> conf = frame_confidences(post, np.array([0, 2]), pdf_to_group)
>>> np.round(word_confidences(conf, np.array([[0, 2]])), 2).tolist()
[0.8]
"""

from __future__ import annotations

import numpy as np

from asr.errors import DecodeError

__all__ = ["frame_confidences", "group_posteriors", "pdf_groups", "word_confidences"]


def pdf_groups(
    *,
    arc_pdf: np.ndarray,
    arc_ilabel: np.ndarray,
    ilabel_to_phone: np.ndarray | None,
    num_pdfs: int,
) -> np.ndarray:
    """``(num_pdfs,) int`` group (phone) index per pdf, from a graph's emitting arcs.

    Each pdf joins the phone of an arc that reads it (a pdf shared by several phones
    joins one of them); pdfs no arc reads, and all pdfs when ``ilabel_to_phone`` is
    None (CTC), form groups of their own. Groups are numbered 0..num_groups-1.
    """
    key = np.arange(num_pdfs, dtype=np.int64) + (1 << 32)  # own group by default
    if ilabel_to_phone is not None:
        emitting = arc_ilabel != 0
        pdf = arc_pdf[emitting].astype(np.int64)
        phone = np.asarray(ilabel_to_phone, dtype=np.int64)[arc_ilabel[emitting]]
        inside = pdf < num_pdfs
        key[pdf[inside]] = phone[inside]
    _, groups = np.unique(key, return_inverse=True)
    return groups.astype(np.int64)


def group_posteriors(
    log_likes: np.ndarray, pdf_to_group: np.ndarray, *, acoustic_scale: float
) -> np.ndarray:
    """``log_likes: (num_frames, num_pdfs)`` -> ``(num_frames, num_groups)`` float32 posteriors."""
    scores = np.asarray(log_likes, dtype=np.float64) * float(acoustic_scale)
    num_groups = int(pdf_to_group.max()) + 1 if pdf_to_group.size else 0
    if scores.shape[0] == 0:
        return np.zeros((0, num_groups), dtype=np.float32)
    scores -= scores.max(axis=1, keepdims=True)
    post = np.exp(scores)
    post /= post.sum(axis=1, keepdims=True)
    order = np.argsort(pdf_to_group, kind="stable")
    starts = np.searchsorted(pdf_to_group[order], np.arange(num_groups))
    return np.add.reduceat(post[:, order], starts, axis=1).astype(np.float32)


def frame_confidences(
    group_post: np.ndarray, pdf_alignment: np.ndarray, pdf_to_group: np.ndarray
) -> np.ndarray:
    """Posterior of the best path's phone per frame: ``(num_frames,)`` float64."""
    num_frames = int(pdf_alignment.shape[0])
    if group_post.shape[0] < num_frames:
        raise DecodeError(
            f"confidences: {group_post.shape[0]} frames of posteriors for a path of {num_frames}"
        )
    groups = pdf_to_group[np.asarray(pdf_alignment, dtype=np.int64)]
    return group_post[np.arange(num_frames), groups].astype(np.float64)


def word_confidences(frame_conf: np.ndarray, word_boundaries: np.ndarray) -> np.ndarray:
    """Mean frame confidence over each word's ``[start_frame, end_frame)``: ``(num_words,)``."""
    bounds = np.asarray(word_boundaries, dtype=np.int64).reshape(-1, 2)
    if bounds.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(frame_conf)])
    starts = np.clip(bounds[:, 0], 0, frame_conf.shape[0])
    ends = np.clip(np.maximum(bounds[:, 1], starts + 1), 0, frame_conf.shape[0])
    lengths = np.maximum(ends - starts, 1)
    return np.clip((cum[ends] - cum[starts]) / lengths, 0.0, 1.0)
