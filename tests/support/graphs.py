"""Graph-test helpers shared by the HCLG and decision-tree tests: a toy lexicon, a unigram
loop G, the best path of a graph for a word sequence, and checks that a path of
transition-ids spells the words' pronunciations."""

from __future__ import annotations

import kaldifst
import numpy as np

from asr.hmm import TransitionModel

#: A toy lexicon in which YEAH is a prefix of YES.
LEXICON = [("YES", "Y EH S"), ("YEAH", "Y EH"), ("NO", "N OW")]  # YEAH is a prefix of YES


def make_g(words, probs: dict[str, float], final_prob: float) -> kaldifst.StdVectorFst:
    """A one-state (stochastic) unigram loop G."""
    lines = [f"0 0 {words[w]} {words[w]} {-np.log(p)}" for w, p in probs.items()]
    return kaldifst.compile("\n".join(lines) + f"\n0 {-np.log(final_prob)}\n")


def best_input(fst: kaldifst.StdVectorFst, word_ids: list[int]) -> tuple[list[int], list[int]]:
    """Input and output labels of the best path of ``fst`` whose output is ``word_ids``."""
    graph = fst.copy()
    kaldifst.arcsort(graph, sort_type="olabel")
    restricted = kaldifst.compose(graph, kaldifst.make_linear_acceptor(word_ids))
    assert restricted.num_states > 0, "no path for the word sequence"
    ok, ilabels, olabels, _ = kaldifst.get_linear_symbol_sequence(
        kaldifst.shortest_path(restricted)
    )
    assert ok
    return list(ilabels), list(olabels)


def phones_of_tids(tids: list[int], tm: TransitionModel) -> list[int]:
    """Split transition-ids into phone instances, checking each is a valid path through its
    topology HMM (enter at state 0, follow transitions, leave through the final state)."""
    phones, current, expect_state = [], None, 0
    for tid in tids:
        assert 1 <= tid <= tm.num_transition_ids
        phone, state = int(tm.tid2phone[tid]), int(tm.tid2hmm_state[tid])
        if current is None:
            assert state == 0, "a phone must start in HMM state 0"
            current = phone
        assert phone == current and state == expect_state
        expect_state = int(tm.tid2dest_state[tid])
        if expect_state == tm.topology.entry(phone).num_states - 1:  # final: phone complete
            phones.append(phone)
            current, expect_state = None, 0
    assert current is None, "path ends inside a phone"
    return phones


def check_word_path(lang, phone_ids: list[int], words: list[str], prons) -> None:
    """phone_ids == concatenated pronunciations (any variant), with silence only between or
    around words."""
    sil = set(lang.silence_phone_ids)
    names = tuple(lang.phones.symbols(phone_ids))

    def matches(pos: int, k: int) -> bool:
        while pos < len(names) and phone_ids[pos] in sil:
            pos += 1
        if k == len(words):
            return pos == len(names)
        return any(
            names[pos : pos + len(p)] == tuple(p) and matches(pos + len(p), k + 1)
            for p in prons[words[k]]
        )

    assert matches(0, 0), f"{names} is not a pronunciation of {words}"
