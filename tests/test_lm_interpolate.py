"""Linear interpolation of back-off n-gram models (asr/lang/interpolate.py): every context of
the mixed model normalises, listed n-grams carry the exact mixture (checked with a back-off
recursion written here), its dev perplexity equals the mixture's computed token by token when
no back-off is approximated, tuned weights are optimal (grid, scipy, KKT), ARPA round trip,
and ``asr lm interpolate``. Models: AN4 transcripts and speechocean762 sentences."""

from __future__ import annotations

import json
import math
from pathlib import Path

import kaldifst
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from asr.cli.main import main
from asr.errors import LmError
from asr.graph import arpa_to_g
from asr.lang.arpa import BOS, EOS, LOG10_ZERO
from asr.lang.interpolate import (
    component_probabilities,
    interpolate_models,
    mixture_perplexity,
    tune_weights,
)
from asr.lang.lm import (
    NgramConfig,
    perplexity,
    read_arpa,
    read_text_sentences,
    train_ngram,
    write_arpa,
)


def an4_sentences(an4_dir: Path) -> list[list[str]]:
    """AN4 training transcripts: ``<s> W W </s> (utt_id)`` per line."""
    lines = (an4_dir / "etc" / "an4_train.transcription").read_text().splitlines()
    return [line.split()[1:-2] for line in lines]


@pytest.fixture(scope="module")
def texts(an4_dir, speechocean762_dir):
    return an4_sentences(an4_dir), read_text_sentences(speechocean762_dir / "train" / "text")


@pytest.fixture(scope="module")
def models(texts):
    """A: AN4 trigram (Kneser-Ney, no <UNK>); B: speechocean762 bigram (Witten-Bell) whose
    vocabulary leaves a few of its words out, so it has <UNK>. Vocabularies overlap (digits)."""
    an4, so = texts
    a = train_ngram(an4[::4], config=NgramConfig(order=3, unk=None))
    b_text = so[:120]
    b_vocab = sorted({w for s in b_text for w in s})[5:]
    b = train_ngram(b_text, vocab=b_vocab, config=NgramConfig(order=2, method="witten_bell"))
    assert b.unk == "<UNK>" and a.unk is None
    shared = set(a.vocab) & set(b.vocab) - {BOS, EOS}
    assert len(shared) > 5 and set(a.vocab) - set(b.vocab) and set(b.vocab) - set(a.vocab)
    return a, b


def as_dict(model) -> dict[tuple[str, ...], tuple[float, float]]:
    return {words: (lp, bo) for n in range(1, model.order + 1) for words, lp, bo in model.ngrams(n)}


def ref_prob(entries, vocab, word: str, history: tuple[str, ...]) -> float:
    """P(word | history) by the back-off recursion; 0 for a word outside ``vocab``; the
    history restarts after a word outside it."""
    if word not in vocab or word == BOS:
        return 0.0
    for i in range(len(history) - 1, -1, -1):
        if history[i] not in vocab:
            history = history[i + 1 :]
            break

    def logp(h):
        if (*h, word) in entries:
            return entries[(*h, word)][0]
        bow = entries[h][1] if h in entries else 0.0
        return bow + logp(h[1:])

    value = logp(history)
    return 0.0 if value <= LOG10_ZERO else 10.0**value


def mixture_token_probs(models, lambdas, sentences) -> list[float]:
    """The exact mixture's probability of every word and </s>, token by token; words of no
    vocabulary are the first <unk> of the models (skipped without one)."""
    dicts = [as_dict(m) for m in models]
    vocabs = [set(m.vocab) for m in models]
    union = set().union(*vocabs)
    unk = next((m.unk for m in models if m.unk is not None), None)
    probs = []
    for words in sentences:
        tokens = [BOS, *[w if w in union or unk is None else unk for w in words], EOS]
        for t in range(1, len(tokens)):
            if tokens[t] not in union:
                continue
            order = max(m.order for m in models)
            history = tuple(tokens[max(0, t - order + 1) : t])
            probs.append(
                sum(
                    lam
                    * ref_prob(
                        d,
                        v,
                        tokens[t],
                        history[len(history) - m.order + 1 :] if m.order > 1 else (),
                    )
                    for lam, d, v, m in zip(lambdas, dicts, vocabs, models, strict=True)
                )
            )
    return probs


def all_distributions(model) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """Every context of ``model`` (the empty one and each listed n-gram below the top order)
    and P(w | context) for all words w (the model's own back-off scorer)."""
    vocab_size = len(model.vocab)
    bos = model.word_to_id[BOS]
    contexts = [()] + [w for n in range(1, model.order) for w, _, _ in model.ngrams(n)]
    sums = np.zeros(len(contexts))
    for index, context in enumerate(contexts):
        ids = np.array([model.word_to_id[w] for w in context], dtype=np.int64)
        rows = np.concatenate(
            [np.tile(ids, (vocab_size, 1)), np.arange(vocab_size)[:, None]], axis=1
        )
        if not context:
            logp = model.tables[0].logprob.copy()
        else:
            n = rows.shape[1]
            logp = model.score_ids(rows.reshape(-1), np.tile(np.arange(n), vocab_size))
            logp = logp.reshape(vocab_size, n)[:, -1]
        probs = np.where(logp <= LOG10_ZERO, 0.0, 10.0**logp)
        probs[bos] = 0.0
        sums[index] = probs.sum()
    return contexts, sums


@pytest.mark.parametrize("lambdas", [(0.5, 0.5), (0.9, 0.1), (0.0, 1.0)])
def test_every_context_of_the_mixture_normalises(models, lambdas):
    mixed = interpolate_models(models, lambdas)
    assert mixed.order == 3 and mixed.unk == "<UNK>"
    assert set(mixed.vocab) == set(models[0].vocab) | set(models[1].vocab)
    contexts, sums = all_distributions(mixed)
    assert len(contexts) > 500
    np.testing.assert_allclose(sums, 1.0, rtol=0, atol=1e-12)


def test_three_models_and_the_union_of_ngrams(models, texts):
    third = train_ngram(texts[0][1::7], config=NgramConfig(order=2, unk=None))
    mixed = interpolate_models([*models, third], [0.5, 0.3, 0.2])
    _, sums = all_distributions(mixed)
    np.testing.assert_allclose(sums, 1.0, rtol=0, atol=1e-12)
    listed = as_dict(mixed)
    for model in (*models, third):
        assert set(as_dict(model)) <= set(listed)


def test_listed_ngrams_carry_the_exact_mixture(models):
    lambdas = (0.7, 0.3)
    mixed = interpolate_models(models, lambdas)
    dicts = [as_dict(m) for m in models]
    vocabs = [set(m.vocab) for m in models]
    rng = np.random.default_rng(0)
    checked = 0
    for n in range(1, mixed.order + 1):
        ngrams = mixed.ngrams(n)
        for index in rng.choice(len(ngrams), size=min(300, len(ngrams)), replace=False):
            words, logprob, _ = ngrams[index]
            *history, word = words
            expected = sum(
                lam
                * ref_prob(
                    d, v, word, tuple(history)[len(history) - m.order + 1 :] if m.order > 1 else ()
                )
                for lam, d, v, m in zip(lambdas, dicts, vocabs, models, strict=True)
            )
            if expected == 0.0:
                assert logprob == LOG10_ZERO
            else:
                assert 10.0**logprob == pytest.approx(expected, rel=1e-12)
            checked += 1
    assert checked > 600


def test_mixed_model_perplexity_equals_the_mixture_when_nothing_backs_off(models, texts):
    """Dev sentences from A's own training text: every dev n-gram is listed in the mixed model,
    so its (static) perplexity is the exact (dynamic) mixture's."""
    an4, _ = texts
    dev = an4[::4][:300]
    lambdas = (0.6, 0.4)
    mixed = interpolate_models(models, lambdas)
    static = perplexity(mixed, dev)
    probs = mixture_token_probs(models, lambdas, dev)
    assert (
        static.num_oovs == 0
        and static.num_zeroprobs == 0
        and len(probs) == len([t for s in dev for t in (*s, EOS)])
    )
    direct = 10.0 ** (-np.sum(np.log10(probs)) / len(probs))
    assert static.ppl == pytest.approx(direct, rel=1e-9)
    assert mixture_perplexity(models, lambdas, dev).ppl == pytest.approx(direct, rel=1e-9)


def test_kaldi_arpa2fst_reads_the_mixture_and_scores_it_exactly(models, texts, tmp_path):
    """An independent reader and scorer: kaldilm's arpa2fst compiles the written mixture into
    G.fst, whose best path for a sentence costs -ln of the exact mixture probability (the
    sentences come from A's training text, so the mixed model lists all their n-grams)."""
    lambdas = (0.6, 0.4)
    mixed = interpolate_models(models, lambdas)
    write_arpa(mixed, tmp_path / "mix.arpa")
    symbols = {w: i for i, w in enumerate(["<eps>", *mixed.vocab, "#0"])}
    (tmp_path / "words.txt").write_text("".join(f"{w} {i}\n" for w, i in symbols.items()))
    g_path = arpa_to_g(tmp_path / "mix.arpa", words_txt=tmp_path / "words.txt",
                       out_path=tmp_path / "G.fst")  # fmt: skip
    g = kaldifst.StdVectorFst.read(str(g_path))
    kaldifst.arcsort(g, sort_type="olabel")
    costs = []
    for sentence in texts[0][::4][:200:10]:
        expected = -np.sum(np.log(mixture_token_probs(models, lambdas, [sentence])))
        acceptor = kaldifst.make_linear_acceptor([symbols[w] for w in sentence])
        best = kaldifst.shortest_path(kaldifst.compose(g, acceptor))
        ok, _, olabels, weight = kaldifst.get_linear_symbol_sequence(best)
        assert ok and [symbols[w] for w in sentence] == [o for o in olabels if o]
        costs.append((float(weight.value), expected))
    costs = np.array(costs)
    # G's back-off arcs are epsilons: a back-off path may be cheaper than the listed n-gram's
    # (one sentence of 20 here), never dearer; float32 weights.
    tolerance = 1e-5 * costs[:, 1] + 1e-4
    assert (costs[:, 0] <= costs[:, 1] + tolerance).all()
    assert (np.abs(costs[:, 0] - costs[:, 1]) <= tolerance).mean() >= 0.9


def test_only_unlisted_ngrams_are_approximated(models, texts):
    """On text neither model saw, tokens whose n-gram (full context) the mixed model lists get
    the exact mixture; the others get bow(h) P(w|h'), not sum_i lambda_i bow_i(h) P_i(w|h')."""
    an4, so = texts
    dev = an4[1::8] + so[120:200]
    lambdas = (0.5, 0.5)
    mixed = interpolate_models(models, lambdas)
    listed = as_dict(mixed)
    exact = mixture_token_probs(models, lambdas, dev)
    static, is_listed = [], []
    for words in dev:
        tokens = [BOS, *[w if w in mixed.word_to_id else mixed.unk for w in words], EOS]
        logp = mixed.sentence_logprobs(tokens[1:-1])
        for t in range(1, len(tokens)):
            static.append(10.0 ** logp[t - 1])
            is_listed.append(tuple(tokens[max(0, t - 2) : t + 1]) in listed)
    assert len(static) == len(exact)  # no OOVs: words in no vocabulary are B's <UNK>
    static, exact, is_listed = np.array(static), np.array(exact), np.array(is_listed)
    assert 0.3 < is_listed.mean() < 0.95
    np.testing.assert_allclose(static[is_listed], exact[is_listed], rtol=1e-9)
    assert not np.allclose(static[~is_listed], exact[~is_listed], rtol=1e-3)
    # The token-by-token figures are what the library's two perplexities report.
    ppl_static = perplexity(mixed, dev).ppl
    ppl_exact = mixture_perplexity(models, lambdas, dev).ppl
    assert ppl_static == pytest.approx(10.0 ** -np.mean(np.log10(static)), rel=1e-9)
    assert ppl_exact == pytest.approx(10.0 ** -np.mean(np.log10(exact)), rel=1e-9)


@pytest.fixture(scope="module")
def shared_vocab_models(texts):
    """In-domain and general models over one vocabulary (both with <UNK>), so that every
    weight, 0 and 1 included, scores the same dev tokens."""
    an4, so = texts
    vocab = sorted({w for s in an4 + so[:400] for w in s})
    a = train_ngram(an4[::2], vocab=vocab, config=NgramConfig(order=3))
    b = train_ngram(so[:300], vocab=vocab, config=NgramConfig(order=3))
    dev = an4[1::6] + so[300:400]
    return a, b, dev


def test_tuned_weights_minimise_dev_perplexity(shared_vocab_models):
    a, b, dev = shared_vocab_models
    tuned = tune_weights([a, b], dev)
    assert sum(tuned.lambdas) == pytest.approx(1.0, abs=1e-12)
    best = tuned.perplexity.ppl
    assert best == pytest.approx(mixture_perplexity([a, b], tuned.lambdas, dev).ppl, rel=1e-12)
    grid = [mixture_perplexity([a, b], (w, 1 - w), dev).ppl for w in np.linspace(0, 1, 21)]
    assert best < min(grid) + 1e-9 and best < grid[0] and best < grid[-1]
    assert grid[0] == pytest.approx(perplexity(b, dev).ppl, rel=1e-9)
    assert grid[-1] == pytest.approx(perplexity(a, dev).ppl, rel=1e-9)
    result = minimize_scalar(
        lambda w: mixture_perplexity([a, b], (w, 1 - w), dev).ppl,
        bounds=(0, 1),
        method="bounded",
        options={"xatol": 1e-8},
    )
    assert tuned.lambdas[0] == pytest.approx(result.x, abs=1e-4)
    # Optimality (KKT): the mean of P_i / P_mix over the dev tokens is 1 for every model.
    probs = component_probabilities([a, b], dev).probs
    ratio = (probs / (np.array(tuned.lambdas) @ probs)).mean(axis=1)
    np.testing.assert_allclose(ratio, 1.0, atol=1e-5)


def test_arpa_round_trip(models, tmp_path):
    mixed = interpolate_models(models, (0.3, 0.7))
    path = tmp_path / "mix.arpa"
    write_arpa(mixed, path)
    back = read_arpa(path, unk="<UNK>")
    assert back.vocab == mixed.vocab and back.num_ngrams == mixed.num_ngrams
    assert back.unk == mixed.unk
    for original, read in zip(mixed.tables, back.tables, strict=True):
        np.testing.assert_array_equal(original.keys, read.keys)
        np.testing.assert_allclose(read.logprob, original.logprob, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(read.backoff, original.backoff, rtol=1e-9, atol=1e-12)
    _, sums = all_distributions(back)
    np.testing.assert_allclose(sums, 1.0, rtol=0, atol=1e-8)


def test_errors(models):
    with pytest.raises(LmError, match="2 models need 2 weights"):
        interpolate_models(models, [1.0])
    with pytest.raises(LmError, match="sum to 1"):
        interpolate_models(models, [0.5, 0.6])
    with pytest.raises(LmError, match=">= 0"):
        interpolate_models(models, [1.5, -0.5])
    with pytest.raises(LmError, match="at least one model"):
        interpolate_models([], [])
    with pytest.raises(LmError, match="inside a sentence"):
        tune_weights(models, [["A", EOS, "B"]])
    with pytest.raises(LmError, match="no sentences"):
        tune_weights(models, [[], []])


def test_cli_interpolate(tmp_path, capsys, shared_vocab_models):
    a, b, dev = shared_vocab_models
    write_arpa(a, tmp_path / "a.arpa")
    write_arpa(b, tmp_path / "b.arpa")
    dev_text = tmp_path / "dev_text"
    dev_text.write_text("".join(f"utt{i} {' '.join(s)}\n" for i, s in enumerate(dev) if s))
    out = tmp_path / "mix.arpa"
    args = ["lm", "interpolate", str(tmp_path / "a.arpa"), str(tmp_path / "b.arpa")]
    assert main([*args, "--dev", str(dev_text), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    a_back, b_back = read_arpa(tmp_path / "a.arpa"), read_arpa(tmp_path / "b.arpa")
    tuned = tune_weights([a_back, b_back], dev)
    assert report["tuned"] and report["lambdas"] == pytest.approx(tuned.lambdas, abs=1e-6)
    mixed = read_arpa(out)
    assert report["ngrams"] == list(mixed.num_ngrams)
    assert report["dev"]["mixed_model"]["ppl"] == pytest.approx(
        perplexity(mixed, dev).ppl, abs=1e-4
    )
    assert report["dev"]["mixture"]["ppl"] == pytest.approx(tuned.perplexity.ppl, abs=1e-4)
    components = [c["ppl"] for c in report["dev"]["components"]]
    assert components == pytest.approx([perplexity(m, dev).ppl for m in (a_back, b_back)], abs=1e-4)
    assert report["dev"]["mixture"]["ppl"] < min(components)

    assert main([*args, "--lambdas", "0.25,0.75", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lambdas"] == [0.25, 0.75] and not report["tuned"] and "dev" not in report
    assert main([*args, "--out", str(out)]) == 2
    assert "give --dev" in capsys.readouterr().err
    assert main([*args, "--lambdas", "1", "--out", str(out)]) == 2
    assert "1 weights for 2 models" in capsys.readouterr().err
    assert main([*args[:3], "--lambdas", "1", "--out", str(out)]) == 2
    assert "two or more" in capsys.readouterr().err
    assert not math.isnan(report["lambdas"][0])
