#!/usr/bin/env bash
# yesno recipe (OpenSLR SLR1): 60 utterances of 8 Hebrew "yes"/"no" words, one speaker, 8 kHz.
#
# Usage: recipes/yesno/run.sh [--corpus-dir DIR] [--stage N] [--stop-stage M] [--nj N] [--feat-type T]
#   --corpus-dir DIR  the yesno corpus (default: $ASR_CORPORA/yesno, else ../shared/data/yesno)
#   --stage/--stop-stage  run only stages N..M (default: all)
#   --nj N            parallel jobs (default: 1; there is one speaker)
#   --feat-type T     mfcc (default) or lpcc; lpcc works in data/yesno_lpcc and exp/yesno_lpcc, and
#                     RESULTS.md then lists both front-ends
# Stages:
#   0 data dirs (Kaldi's split: first 30 sorted files train, last 30 test)
#   1 features (--feat-type: MFCC or LPCC) + CMVN stats
#   2 lang dir from the two-word lexicon in recipes/yesno/local/lexicon.txt
#   3 unigram LM over YES/NO and G.fst
#   4 monophone HMM topology/transition model and its HCLG graph
#   5 monophone GMM-HMM training from a flat start (exp/yesno/mono)
#   6 its HCLG, decoding of the test set (exp/yesno/mono/decode_test/wer)
#  13 hybrid DNN-HMM (TDNN) on the best GMM alignments (tri2 > tri1 > mono): exp/yesno/dnn
#  14 its HCLG (same tree as the GMM) and decoding
#  15 phone CTC (conv + BiLSTM) from the lexicon: exp/yesno/ctc
#  16 its TLG (asr graph mktlg) and decoding
#  19 recipes/yesno/RESULTS.md from exp/yesno/*/decode_*/wer (asr results)
#  20 model bundles exp/yesno/<model>/bundle (asr export), alignment plot, results chart
# Stage numbers are AN4's (recipes/common.sh); yesno has no tri1-tri3 (7-12) or streaming CTC
# (17-18). Hyperparameters: recipes/yesno/conf/*.conf.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"

stage=0
stop_stage=100
corpus_dir="${ASR_CORPORA:-$root/../shared/data}/yesno"
nj=1
feat_type=mfcc
. "$root/recipes/common.sh"
# Paths given relative to where the user stands; the recipe then works from the repository root.
corpus_dir="$(realpath -m "$corpus_dir")"
cd "$root"

data=data/yesno$(feat_suffix)
exp=exp/yesno$(feat_suffix)
conf=recipes/yesno/conf

if stage_ok 0; then
  log "stage 0: data directories from $corpus_dir"
  asr prepare yesno --corpus-dir "$corpus_dir" --out "$data"
fi

if stage_ok 1; then
  log "stage 1: $feat_type features"
  for set in train test; do
    asr features compute "$data/$set" --type "$feat_type" --nj "$nj"
  done
fi

if stage_ok 2; then
  log "stage 2: lang directory"
  asr lang prepare --dict recipes/yesno/local/lexicon.txt --out "$data/lang"
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

if stage_ok 13; then
  log "stage 13: DNN-HMM (TDNN, cross-entropy) on $(best_gmm_ali)"
  asr train dnn "$data/train" "$data/train" "$data/lang" "$(best_gmm_ali)" "$exp/dnn" \
    @"$conf/dnn.conf"
fi

if stage_ok 14; then
  log "stage 14: DNN HCLG (the GMM's tree) and decoding"
  asr graph mkgraph "$data/lang" "$exp/dnn" "$exp/dnn/graph" --skip-if-up-to-date
  decode_model dnn train 0.05,0.083,0.1,0.15 test
fi

if stage_ok 15; then
  log "stage 15: phone CTC (conv + BiLSTM)"
  asr train ctc "$data/train" "$data/train" "$data/lang" "$exp/ctc" @"$conf/ctc.conf"
fi

if stage_ok 16; then
  log "stage 16: CTC TLG and decoding"
  asr graph mktlg "$data/lang" "$exp/ctc/graph" --tokens "$exp/ctc/tokens.txt"
  decode_model ctc train 0.5,1.0,1.5 test
fi

if stage_ok 19; then
  log "stage 19: recipes/yesno/RESULTS.md"
  asr results $(results_dirs yesno) --out recipes/yesno/RESULTS.md --title "yesno results"
fi

if stage_ok 20; then
  log "stage 20: model bundles (exp/yesno/<model>/bundle), alignment plot, results chart"
  export_all yesno test
fi

log "done"
