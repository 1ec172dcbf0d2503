#!/usr/bin/env bash
# yesno recipe (OpenSLR SLR1): 60 utterances of 8 Hebrew "yes"/"no" words, one speaker, 8 kHz.
#
# Usage: recipes/yesno/run.sh [--corpus-dir DIR] [--stage N] [--stop-stage M] [--nj N]
#   --corpus-dir DIR  the yesno corpus (default: $ASR_CORPORA/yesno, else ../shared/data/yesno)
#   --stage/--stop-stage  run only stages N..M (default: all)
#   --nj N            parallel jobs (default: 1; there is one speaker)
# Stages:
#   0 data dirs (Kaldi's split: first 30 sorted files train, last 30 test)
#   1 MFCC features + CMVN stats
#   2 lang dir from the two-word lexicon in recipes/yesno/local/lexicon.txt
#   3 unigram LM over YES/NO and G.fst
#   4 monophone HMM topology/transition model and its HCLG graph
#   5 monophone GMM-HMM training from a flat start (exp/yesno/mono)
#   6 its HCLG, decoding of the test set (exp/yesno/mono/decode_test/wer)
#  11 hybrid DNN-HMM (TDNN) on the best GMM alignments (tri2 > tri1 > mono): exp/yesno/dnn
#  12 its HCLG (same tree as the GMM) and decoding
#  13 phone CTC (conv + BiLSTM) from the lexicon: exp/yesno/ctc
#  14 its TLG (asr graph mktlg) and decoding
#  15 recipes/yesno/RESULTS.md from exp/yesno/*/decode_*/wer (asr results)
#  20 model bundles exp/yesno/<model>/bundle (asr export), alignment plot, results chart
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"

stage=0
stop_stage=100
corpus_dir="${ASR_CORPORA:-$root/../shared/data}/yesno"
nj=1
. "$root/recipes/common.sh"
# Paths given relative to where the user stands; the recipe then works from the repository root.
corpus_dir="$(realpath -m "$corpus_dir")"
cd "$root"

data=data/yesno
exp=exp/yesno

if stage_ok 0; then
  log "stage 0: data directories from $corpus_dir"
  asr prepare yesno --corpus-dir "$corpus_dir" --out "$data"
fi

if stage_ok 1; then
  log "stage 1: MFCC features"
  for set in train test; do
    asr features compute "$data/$set" --type mfcc --nj "$nj"
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
  asr graph mkgraph "$data/lang" "$exp/mono0" "$exp/mono0/graph"
fi

if stage_ok 5; then
  log "stage 5: monophone GMM-HMM training"
  asr train mono "$data/train" "$data/lang" "$exp/mono" --totgauss 400 --nj "$nj"
fi

if stage_ok 6; then
  log "stage 6: monophone HCLG and decoding"
  asr graph mkgraph "$data/lang" "$exp/mono" "$exp/mono/graph" --skip-if-up-to-date
  asr decode "$exp/mono" "$data/test" --graph "$exp/mono/graph" --out "$exp/mono/decode_test" \
    --nj "$nj"
fi

# best_gmm_ali: the alignments of the best GMM trained so far.
best_gmm_ali() {
  local model
  for model in tri2 tri1 mono; do
    if [ -d "$exp/$model/ali" ]; then echo "$exp/$model/ali"; return; fi
  done
  echo "$0: no GMM alignments under $exp (run the GMM stages first)" >&2; return 1
}

# decode_nnet MODEL SCALES: decode train at SCALES (the best one is kept), then
# the other sets at that scale.
decode_nnet() {
  local model=$1 scales=$2 first=1 set scale
  for set in train test; do
    [ -d "$data/$set" ] || continue
    if [ $first = 1 ]; then
      asr decode "$exp/$model" "$data/$set" --graph "$exp/$model/graph" \
        --out "$exp/$model/decode_$set" --nj "$nj" --acoustic-scales "$scales"
      scale=$(sed -n 's/^ *"acoustic_scale": *\([0-9.eE+-]*\).*/\1/p' "$exp/$model/decode_$set/decode.json")
      first=0
    else
      asr decode "$exp/$model" "$data/$set" --graph "$exp/$model/graph" \
        --out "$exp/$model/decode_$set" --nj "$nj" --acoustic-scale "$scale"
    fi
  done
}

if stage_ok 11; then
  log "stage 11: DNN-HMM (TDNN, cross-entropy) on $(best_gmm_ali)"
  asr train dnn "$data/train" "$data/train" "$data/lang" "$(best_gmm_ali)" "$exp/dnn" \
    --epochs 8 --hidden-dim 256 --num-layers 4 --context 6,6
fi

if stage_ok 12; then
  log "stage 12: DNN HCLG (the GMM's tree) and decoding"
  asr graph mkgraph "$data/lang" "$exp/dnn" "$exp/dnn/graph" --skip-if-up-to-date
  decode_nnet dnn 0.05,0.083,0.1,0.15
fi

if stage_ok 13; then
  log "stage 13: phone CTC (conv + BiLSTM)"
  asr train ctc "$data/train" "$data/train" "$data/lang" "$exp/ctc" \
    --epochs 40 --hidden 96 --num-layers 2 --conv-channels 96 --lr 3e-3 \
    --lr-schedule constant --batch-size 2 --patience 0 --dropout 0
fi

if stage_ok 14; then
  log "stage 14: CTC TLG and decoding"
  asr graph mktlg "$data/lang" "$exp/ctc/graph" --tokens "$exp/ctc/tokens.txt"
  decode_nnet ctc 0.5,1.0,1.5
fi

if stage_ok 15; then
  log "stage 15: recipes/yesno/RESULTS.md"
  asr results "$exp" --out recipes/yesno/RESULTS.md --title "yesno results"
fi

if stage_ok 20; then
  log "stage 20: model bundles (exp/yesno/<model>/bundle), alignment plot, results chart"
  for model in mono tri1 tri2 tri3 dnn ctc; do
    [ -d "$exp/$model/graph" ] || continue
    decode_opt=()
    [ -f "$exp/$model/decode_test/decode.json" ] && decode_opt=(--decode-dir "$exp/$model/decode_test")
    asr export "$exp/$model" --graph "$exp/$model/graph" --out "$exp/$model/bundle" \
      --lang "$data/lang" "${decode_opt[@]}"
  done
  if [ -d "$exp/mono/bundle" ]; then
    wav=$(awk 'NR == 1 { $1 = ""; sub(/^ +/, ""); print; exit }' "$data/test/wav.scp")
    asr plot alignment --model "$exp/mono/bundle" "$wav" --out "$exp/mono/alignment.png"
  fi
  if [ -f recipes/yesno/RESULTS.md ]; then
    asr plot results recipes/yesno/RESULTS.md --out recipes/yesno/results.png
  fi
fi

log "done"
