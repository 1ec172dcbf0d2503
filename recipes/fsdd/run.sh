#!/usr/bin/env bash
# FSDD recipe: Free Spoken Digit Dataset, 3000 isolated digits, 6 speakers, 8 kHz.
#
# Usage: recipes/fsdd/run.sh [--corpus-dir DIR] [--stage N] [--stop-stage M] [--nj N] [--feat-type T]
#   --corpus-dir DIR  FSDD (default: $ASR_CORPORA/fsdd, else ../shared/data/fsdd)
#   --stage/--stop-stage  run only stages N..M (default: all)
#   --nj N            parallel jobs (default: 2)
#   --feat-type T     mfcc (default) or lpcc; lpcc works in data/fsdd_lpcc and exp/fsdd_lpcc, and
#                     RESULTS.md then lists both front-ends
#   --cmudict FILE    CMUdict (default: $ASR_CORPORA/cmudict/cmudict.dict)
# Stages:
#   0 data dirs (documented split: takes 0-4 test, 5-49 train)
#   1 features (--feat-type: MFCC or LPCC) + CMVN stats
#   2 lang dir: the ten digit words from CMUdict
#   3 unigram LM over the digits and G.fst
#   4 monophone HMM topology/transition model and its HCLG graph
#   5 monophone GMM-HMM training from a flat start (exp/fsdd/mono)
#   6 its HCLG, decoding of the test set (exp/fsdd/mono/decode_test/wer)
#   7 tri1: triphone GMM-HMM on MFCC+deltas from the mono alignments (exp/fsdd/tri1)
#   8 its HCLG and decoding of the test set
#   9 tri2: LDA+MLLT triphone GMM-HMM from the tri1 alignments (exp/fsdd/tri2)
#  10 its HCLG and decoding of the test set
#  13 hybrid DNN-HMM (TDNN) on the best GMM alignments (tri2 > tri1 > mono): exp/fsdd/dnn
#  14 its HCLG (same tree as the GMM) and decoding
#  15 phone CTC (conv + BiLSTM) from the lexicon: exp/fsdd/ctc
#  16 its TLG (asr graph mktlg) and decoding
#  19 recipes/fsdd/RESULTS.md from exp/fsdd/*/decode_*/wer (asr results)
#  20 model bundles exp/fsdd/<model>/bundle (asr export), alignment plot, results chart
# Stage numbers are AN4's (recipes/common.sh); FSDD has no tri3 (11-12) or streaming CTC
# (17-18). Hyperparameters: recipes/fsdd/conf/*.conf.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"

stage=0
stop_stage=100
corpus_dir="${ASR_CORPORA:-$root/../shared/data}/fsdd"
cmudict="${ASR_CORPORA:-$root/../shared/data}/cmudict/cmudict.dict"
nj=2
feat_type=mfcc
. "$root/recipes/common.sh"
# Paths given relative to where the user stands; the recipe then works from the repository root.
corpus_dir="$(realpath -m "$corpus_dir")"
cmudict="$(realpath -m "$cmudict")"
cd "$root"

data=data/fsdd$(feat_suffix)
exp=exp/fsdd$(feat_suffix)
conf=recipes/fsdd/conf

if stage_ok 0; then
  log "stage 0: data directories from $corpus_dir"
  asr prepare fsdd --corpus-dir "$corpus_dir" --out "$data"
fi

if stage_ok 1; then
  log "stage 1: $feat_type features"
  for set in train test; do
    asr features compute "$data/$set" --type "$feat_type" --nj "$nj"
  done
fi

if stage_ok 2; then
  log "stage 2: lang directory"
  asr lang prepare --dict "$cmudict" --uppercase --words "$data/train/text" --out "$data/lang"
fi

if stage_ok 3; then
  log "stage 3: unigram LM and G.fst"
  asr lm train "$data/train/text" --order 1 --vocab "$data/lang/words.txt" --out "$data/lang/lm.arpa"
  asr lm to-g "$data/lang/lm.arpa" --words "$data/lang/words.txt" --out "$data/lang/G.fst"
fi

if stage_ok 4; then
  log "stage 4: monophone model topology and HCLG"
  asr hmm init-mono "$data/lang" --out "$exp/mono0"
  asr graph mkgraph "$data/lang" "$exp/mono0" "$exp/mono0/graph" --skip-if-up-to-date
fi

if stage_ok 5; then
  log "stage 5: monophone GMM-HMM training"
  asr train mono "$data/train" "$data/lang" "$exp/mono" @"$conf/mono.conf" --nj "$nj"
fi

if stage_ok 6; then
  log "stage 6: monophone HCLG and decoding"
  asr graph mkgraph "$data/lang" "$exp/mono" "$exp/mono/graph" --skip-if-up-to-date
  decode_model mono test 0.1
fi

if stage_ok 7; then
  log "stage 7: tri1 (triphones on MFCC + deltas) from the monophone alignments"
  asr train tri "$data/train" "$data/lang" "$exp/mono" "$exp/tri1" --mode deltas \
    @"$conf/tri1.conf" --nj "$nj"
fi

if stage_ok 8; then
  log "stage 8: tri1 HCLG and decoding"
  asr graph mkgraph "$data/lang" "$exp/tri1" "$exp/tri1/graph" --skip-if-up-to-date
  decode_model tri1 test 0.1
fi

if stage_ok 9; then
  log "stage 9: tri2 (LDA+MLLT) from the tri1 alignments"
  asr train tri "$data/train" "$data/lang" "$exp/tri1" "$exp/tri2" --mode lda-mllt \
    @"$conf/tri2.conf" --nj "$nj"
fi

if stage_ok 10; then
  log "stage 10: tri2 HCLG and decoding"
  asr graph mkgraph "$data/lang" "$exp/tri2" "$exp/tri2/graph" --skip-if-up-to-date
  decode_model tri2 test 0.1
fi

if stage_ok 13; then
  log "stage 13: DNN-HMM (TDNN, cross-entropy) on $(best_gmm_ali)"
  asr train dnn "$data/train" "$data/train" "$data/lang" "$(best_gmm_ali)" "$exp/dnn" \
    @"$conf/dnn.conf"
fi

if stage_ok 14; then
  log "stage 14: DNN HCLG (the GMM's tree) and decoding"
  asr graph mkgraph "$data/lang" "$exp/dnn" "$exp/dnn/graph" --skip-if-up-to-date
  decode_model dnn test 0.083
fi

if stage_ok 15; then
  log "stage 15: phone CTC (conv + BiLSTM)"
  asr train ctc "$data/train" "$data/train" "$data/lang" "$exp/ctc" @"$conf/ctc.conf"
fi

if stage_ok 16; then
  log "stage 16: CTC TLG and decoding"
  asr graph mktlg "$data/lang" "$exp/ctc/graph" --tokens "$exp/ctc/tokens.txt"
  decode_model ctc test 1.0
fi

if stage_ok 19; then
  log "stage 19: recipes/fsdd/RESULTS.md"
  asr results $(results_dirs fsdd) --out recipes/fsdd/RESULTS.md --title "fsdd results"
fi

if stage_ok 20; then
  log "stage 20: model bundles (exp/fsdd/<model>/bundle), alignment plot, results chart"
  export_all fsdd test
fi

log "done"
