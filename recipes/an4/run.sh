#!/usr/bin/env bash
# AN4 recipe: CMU's alphanumeric census corpus, from the official layout to scored GMM, DNN and CTC models.
#
# Usage: recipes/an4/run.sh [--corpus-dir DIR] [--stage N] [--stop-stage M] [--nj N] [--feat-type T] [--lm-order N]
#   --corpus-dir DIR  AN4 in its official layout (default: $ASR_CORPORA/an4, else ../shared/data/an4
#                     next to the checkout). The official test portion is used when present.
#   --stage/--stop-stage  run only stages N..M (default: all). Finished steps are skipped when
#                     their outputs are newer than their inputs.
#   --nj N            parallel jobs for data-parallel stages (default: 2)
#   --feat-type T     mfcc (default) or lpcc; lpcc works in data/an4_lpcc and exp/an4_lpcc, and
#                     RESULTS.md then lists both front-ends
#   --lm-order N      n-gram order of the word LM (default: 3)
# Stages:
#   0 data dirs (train, speaker-disjoint dev carved from train, test when present)
#   1 features (--feat-type: MFCC or LPCC) + per-speaker CMVN stats
#   2 lang dir (an4.dic + an4.filler), L.fst
#   3 word LM on the training transcripts (Kneser-Ney), G.fst; a one-order-higher LM that
#     rescores every decode's lattices
#   4 monophone HMM topology/transition model and its HCLG graph
#   5 monophone GMM-HMM training from a flat start (exp/an4/mono)
#   6 its HCLG; decoding of dev at several acoustic scales, test at dev's best scale
#   7 tri1: triphone GMM-HMM on MFCC+deltas from the mono alignments (exp/an4/tri1)
#   8 its HCLG and decoding (dev; test at dev's best acoustic scale)
#   9 tri2: LDA+MLLT triphone GMM-HMM from the tri1 alignments (exp/an4/tri2)
#  10 its HCLG and decoding (dev; test at dev's best acoustic scale)
#  11 tri3: speaker-adaptive training (fMLLR per speaker) from the tri2 alignments (exp/an4/tri3)
#  12 its HCLG and decoding in passes per speaker (SI pass, fMLLR, adapted passes)
#  13 hybrid DNN-HMM (TDNN) on tri3's alignments and fMLLR-adapted features: exp/an4/dnn
#  14 its HCLG (same tree as the GMM) and decoding
#  15 phone CTC (conv + BiLSTM) from the lexicon: exp/an4/ctc
#  16 its TLG (asr graph mktlg) and decoding
#  17 streaming CTC: the same with a unidirectional LSTM (exp/an4/ctc_stream)
#  18 its TLG and decoding
#  19 recipes/an4/RESULTS.md from exp/an4/*/decode_*/wer (asr results)
#  20 model bundles exp/an4/<model>/bundle (asr export), alignment plot, results chart
# Outputs: data/an4/{train,dev,test,lang}, exp/an4/... (relative to the repository root).
# Hyperparameters: recipes/an4/conf/*.conf (the stage numbers are every recipe's: recipes/common.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"

stage=0
stop_stage=100
corpus_dir="${ASR_CORPORA:-$root/../shared/data}/an4"
nj=2
feat_type=mfcc
lm_order=3
. "$root/recipes/common.sh"
# Paths given relative to where the user stands; the recipe then works from the repository root.
corpus_dir="$(realpath -m "$corpus_dir")"
cd "$root"

data=data/an4$(feat_suffix)
exp=exp/an4$(feat_suffix)
conf=recipes/an4/conf
sets="train dev"
gmm_scales=0.033,0.04,0.05,0.067,0.083,0.1,0.125  # acoustic scales tried on dev
word_ins_penalties=0,0.5,1  # tried with each scale on dev's lattices (conf/decode.conf)
[ -f "$corpus_dir/etc/an4_test.fileids" ] && sets="$sets test"

if stage_ok 0; then
  log "stage 0: data directories from $corpus_dir"
  asr prepare an4 --corpus-dir "$corpus_dir" --out "$data"
fi

if stage_ok 1; then
  log "stage 1: $feat_type features"
  for set in $sets; do
    asr features compute "$data/$set" --type "$feat_type" --nj "$nj"
  done
fi

if stage_ok 2; then
  log "stage 2: lang directory"
  asr lang prepare --dict "$corpus_dir/etc/an4.dic" --filler "$corpus_dir/etc/an4.filler" \
    --out "$data/lang"
fi

if stage_ok 3; then
  log "stage 3: ${lm_order}-gram LM and G.fst, $((lm_order + 1))-gram LM for lattice rescoring"
  asr lm train "$data/train/text" --order "$lm_order" --vocab "$data/lang/words.txt" \
    --heldout "$data/dev/text" --out "$data/lang/lm.arpa"
  asr lm to-g "$data/lang/lm.arpa" --words "$data/lang/words.txt" --out "$data/lang/G.fst"
  asr lm train "$data/train/text" --order "$((lm_order + 1))" --vocab "$data/lang/words.txt" \
    --heldout "$data/dev/text" --out "$data/lang/lm_rescore.arpa"
fi
# every decode's lattices are rescored with the larger LM (decode_model in recipes/common.sh)
rescore_lm="$data/lang/lm_rescore.arpa"

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
  log "stage 6: monophone HCLG and decoding (dev at several acoustic scales, test at dev's best)"
  asr graph mkgraph "$data/lang" "$exp/mono" "$exp/mono/graph" --skip-if-up-to-date
  decode_model mono dev "$gmm_scales" test
fi

if stage_ok 7; then
  log "stage 7: tri1 (triphones on MFCC + deltas) from the monophone alignments"
  asr train tri "$data/train" "$data/lang" "$exp/mono" "$exp/tri1" --mode deltas \
    @"$conf/tri1.conf" --nj "$nj"
fi

if stage_ok 8; then
  log "stage 8: tri1 HCLG and decoding (dev, then test at dev's best acoustic scale)"
  asr graph mkgraph "$data/lang" "$exp/tri1" "$exp/tri1/graph" --skip-if-up-to-date
  decode_model tri1 dev "$gmm_scales" test
fi

if stage_ok 9; then
  log "stage 9: tri2 (LDA+MLLT) from the tri1 alignments"
  asr train tri "$data/train" "$data/lang" "$exp/tri1" "$exp/tri2" --mode lda-mllt \
    @"$conf/tri2.conf" --nj "$nj"
fi

if stage_ok 10; then
  log "stage 10: tri2 HCLG and decoding (dev, then test at dev's best acoustic scale)"
  asr graph mkgraph "$data/lang" "$exp/tri2" "$exp/tri2/graph" --skip-if-up-to-date
  decode_model tri2 dev "$gmm_scales" test
fi

if stage_ok 11; then
  log "stage 11: tri3 (SAT: fMLLR per speaker) from the tri2 alignments"
  asr train sat "$data/train" "$data/lang" "$exp/tri2" "$exp/tri3" @"$conf/tri3.conf" \
    --nj "$nj"
fi

if stage_ok 12; then
  log "stage 12: tri3 HCLG and decoding (per speaker: SI pass, fMLLR, adapted passes)"
  asr graph mkgraph "$data/lang" "$exp/tri3" "$exp/tri3/graph" --skip-if-up-to-date
  decode_model tri3 dev "$gmm_scales" test
fi

if stage_ok 13; then
  log "stage 13: DNN-HMM (TDNN, cross-entropy) on tri3's alignments and fMLLR features"
  asr train dnn "$data/train" "$data/dev" "$data/lang" "$exp/tri3/ali" "$exp/dnn" --fmllr \
    @"$conf/dnn.conf"
fi

if stage_ok 14; then
  log "stage 14: DNN HCLG (tri3's tree) and decoding (per speaker: transforms from tri3's GMMs)"
  asr graph mkgraph "$data/lang" "$exp/dnn" "$exp/dnn/graph" --skip-if-up-to-date
  decode_model dnn dev 0.067,0.083,0.1,0.125,0.15,0.2 test  # its best lies above the GMMs'
fi

if stage_ok 15; then
  log "stage 15: phone CTC (conv + BiLSTM)"
  asr train ctc "$data/train" "$data/dev" "$data/lang" "$exp/ctc" @"$conf/ctc.conf"
fi

if stage_ok 16; then
  log "stage 16: CTC TLG and decoding"
  asr graph mktlg "$data/lang" "$exp/ctc/graph" --tokens "$exp/ctc/tokens.txt"
  decode_model ctc dev 0.7,1.0,1.5,2,3,4,5 test  # CTC log-posteriors: scales above 1 (vs GMMs' ~0.05)
fi

if stage_ok 17; then
  log "stage 17: streaming phone CTC (conv + unidirectional LSTM)"
  asr train ctc "$data/train" "$data/dev" "$data/lang" "$exp/ctc_stream" @"$conf/ctc.conf" \
    --unidirectional
fi

if stage_ok 18; then
  log "stage 18: streaming CTC TLG and decoding"
  asr graph mktlg "$data/lang" "$exp/ctc_stream/graph" --tokens "$exp/ctc_stream/tokens.txt"
  decode_model ctc_stream dev 0.7,1.0,1.5,2,3,4,5 test
fi

if stage_ok 19; then
  log "stage 19: recipes/an4/RESULTS.md"
  asr results $(results_dirs an4) --out recipes/an4/RESULTS.md --title "an4 results"
fi

if stage_ok 20; then
  log "stage 20: model bundles (exp/an4/<model>/bundle), alignment plot, results chart"
  export_all an4 dev
fi

log "done"
