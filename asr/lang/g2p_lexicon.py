"""Give every word of a vocabulary a pronunciation: the lexicon's own, else the G2P model's.

:func:`complete_lexicon` never drops a word: a word the lexicon lacks is predicted by the
:class:`~asr.lang.g2p.G2PModel`, and words neither can pronounce (characters outside the G2P
alphabet) raise one :class:`LangError` listing them all. The report says which words came
from where.

Phone sets. The predicted phones are written in the phone set of the lexicon they join
(:func:`map_g2p_phones`): CMUdict phones carry stress digits (``AH0``), which
:func:`~asr.lang.lexicon.read_lexicon` strips by default, so a G2P model trained on stripped
CMUdict (the default of ``asr lang g2p-train``) matches a lexicon read the default way
(speechocean762's ``resource/lexicon.txt`` then has the same 39 phones). With stress kept on
both sides, a stressed phone the lexicon never uses maps to the same vowel without a digit if
the lexicon has it, else to its ``1``, ``0`` or ``2`` variant, in that order (speechocean762
has no ``IY2``: it becomes ``IY1``). Stress cannot be invented: a stress-free model for a
stressed lexicon is an error, as is any phone with no counterpart.

>>> from asr.lang.lexicon import Lexicon
>>> map_g2p_phones(("AH0", "IY2", "K"), ("AH0", "IY0", "IY1", "K"))
{'AH0': 'AH0', 'IY2': 'IY1', 'K': 'K'}
>>> map_g2p_phones(("AH0", "K"), ("AH", "K"))
{'AH0': 'AH', 'K': 'K'}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from asr.errors import LangError
from asr.lang.g2p import G2PModel
from asr.lang.lexicon import Lexicon, LexiconEntry

__all__ = ["LexiconCompletion", "complete_lexicon", "map_g2p_phones"]

_STRESS = re.compile(r"^(.*?)([0-2])$")


@dataclass(frozen=True)
class LexiconCompletion:
    """Where each word's pronunciation came from.

    ``from_lexicon``/``from_g2p``: the words (in input order); ``phone_map``: the G2P phones
    that were renamed to the lexicon's phone set (only those that differ).
    """

    from_lexicon: tuple[str, ...]
    from_g2p: tuple[str, ...]
    phone_map: Mapping[str, str]

    def to_json(self) -> dict:
        return {
            "num_words": len(self.from_lexicon) + len(self.from_g2p),
            "num_from_lexicon": len(self.from_lexicon),
            "num_from_g2p": len(self.from_g2p),
            "from_g2p": list(self.from_g2p),
            "phone_map": dict(self.phone_map),
        }


def map_g2p_phones(g2p_phones: Iterable[str], phone_set: Iterable[str]) -> dict[str, str]:
    """Each G2P phone's counterpart in ``phone_set`` (see the module notes for the rule)."""
    targets = set(phone_set)
    mapping: dict[str, str] = {}
    unmapped: list[str] = []
    needs_stress = False
    for phone in g2p_phones:
        if phone in targets:
            mapping[phone] = phone
            continue
        match = _STRESS.match(phone)
        base = match.group(1) if match else phone
        candidates = [base] if match else []
        candidates += [base + digit for digit in "102"] if match else []
        found = next((c for c in candidates if c in targets), None)
        if found is None:
            unmapped.append(phone)
            needs_stress |= not match and any(base + d in targets for d in "012")
        else:
            mapping[phone] = found
    if unmapped:
        hint = (
            " (the lexicon marks stress and the G2P model does not: train it with stress kept)"
            if needs_stress
            else ""
        )
        raise LangError(
            f"G2P phone(s) {' '.join(unmapped)} have no counterpart in the lexicon's phone "
            f"set{hint}"
        )
    return mapping


def complete_lexicon(
    words: Iterable[str],
    lexicon: Lexicon,
    g2p_model: G2PModel,
    *,
    nbest: int = 1,
    phone_set: Sequence[str] | None = None,
) -> tuple[Lexicon, LexiconCompletion]:
    """Pronunciations for every distinct word of ``words`` (in first-seen order): all of the
    lexicon's when it has the word (exact spelling), else the G2P model's ``nbest`` (phones
    mapped to ``phone_set``, default the lexicon's phones; see :func:`map_g2p_phones`).
    A predicted phone with no counterpart there raises :class:`LangError` (pass the full
    phone set of the dictionary as ``phone_set`` when the lexicon is small).

    >>> from asr.lang.g2p import G2PConfig
    >>> model = G2PModel.train([("cat", "K AE T"), ("bat", "B AE T"), ("tab", "T AE B")],
    ...                        G2PConfig(order=3))
    >>> lexicon = Lexicon.from_pairs([("CAT", "K AE T"), ("TAB", "T AE B")])
    >>> lex, report = complete_lexicon(["CAT", "BAT"], lexicon, model)
    >>> [(e.word, " ".join(e.pron)) for e in lex.entries], report.from_g2p
    ([('CAT', 'K AE T'), ('BAT', 'B AE T')], ('BAT',))
    """
    ordered = list(dict.fromkeys(words))
    known = [w for w in ordered if w in lexicon]
    unknown = [w for w in ordered if w not in lexicon]
    phone_map: dict[str, str] = {}
    predicted: dict[str, list[tuple[str, ...]]] = {}
    if unknown:
        bad = [w for w in unknown if not g2p_model.in_alphabet(w)]
        if bad:
            shown = " ".join(bad[:20]) + (f" ... ({len(bad)} in all)" if len(bad) > 20 else "")
            raise LangError(
                f"{len(bad)} word(s) are in neither the lexicon nor the G2P model's alphabet "
                f"{''.join(g2p_model.alphabet)!r}: {shown}"
            )
        hyps = g2p_model.predict_many(unknown, nbest=nbest)
        used = sorted({p for word_hyps in hyps for h in word_hyps for p in h.phones})
        targets = lexicon.phones if phone_set is None else tuple(phone_set)
        phone_map = map_g2p_phones(used, targets)
        for word, word_hyps in zip(unknown, hyps, strict=True):
            predicted[word] = [tuple(phone_map[p] for p in h.phones) for h in word_hyps]
    entries: list[LexiconEntry] = []
    for word in ordered:
        if word in lexicon:
            entries.extend(LexiconEntry(word, pron, prob) for pron, prob in lexicon.prons(word))
        else:
            prons = list(dict.fromkeys(p for p in predicted[word] if p))
            if not prons:
                raise LangError(f"the G2P model gave {word!r} no pronunciation")
            entries.extend(LexiconEntry(word, pron) for pron in prons)
    report = LexiconCompletion(
        from_lexicon=tuple(known),
        from_g2p=tuple(unknown),
        phone_map={g: t for g, t in phone_map.items() if g != t},
    )
    return Lexicon(entries=tuple(entries), silence_phones=lexicon.silence_phones), report
