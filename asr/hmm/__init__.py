"""HMM structure shared by GMM and DNN acoustic models.

* :mod:`asr.hmm.tree` — :class:`ContextDependency` (phone context + pdf-class -> pdf id);
* :mod:`asr.hmm.transition_model` — :class:`TransitionModel` (Kaldi's transition-ids);
* :mod:`asr.hmm.model` — :class:`HmmModel` (topology + tree + transitions, saved as a model dir).

>>> from asr.hmm import ContextDependency
>>> ContextDependency.monophone(phones=[1], num_pdf_classes={1: 3}).num_pdfs
3
"""

from asr.hmm.model import HmmModel, init_monophone, init_monophone_from
from asr.hmm.transition_model import TransitionModel
from asr.hmm.tree import PDF_CLASS_KEY, ContextDependency, Leaf, Split, Table

__all__ = [
    "PDF_CLASS_KEY",
    "ContextDependency",
    "HmmModel",
    "Leaf",
    "Split",
    "Table",
    "TransitionModel",
    "init_monophone",
    "init_monophone_from",
]
