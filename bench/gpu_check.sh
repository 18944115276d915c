#!/usr/bin/env bash
# One device check of the training code on a GPU machine (no internet), run from the repo root:
#
#   bash bench/gpu_check.sh        # or a copy: bash .gpucheck/gpu_check.sh (it finds gpu_check_data.py beside it)
#
# 1. installs the carried wheels (.whl/: trl, datasets, sqlite-utils, and our exact transformers/peft/... and
#    their missing needs) into /tmp/site, prints the versions, nvidia-smi and checks align/ and storage/ import;
# 2. `accelerate launch --num_processes 1 -m bench.ppo_gpu`: the SmolLM2-135M-shaped random policy (30 blocks),
#    its LoRA, value head and reward model on the GPU, the LoRA moves and the base does not, time per step;
# 3. a whole round on the GPU: a feedback DB (rankings, thumbs, rewrites; the default thresholds) with the
#    tiny random Llama of the tests as base, `python -m align run`, then checks that one round succeeded, one
#    candidate was registered, and metrics.json says `training.device == "cuda"`.
# Needs .gpucheck/ (the tiny model with SmolLM2's tokenizer, an HH sample): bench/gpu_check_data.py makes it.
# Logs go to $OUT (default /tmp/out). The last line is GPU CHECK PASSED or GPU CHECK FAILED (exit 1); every step
# has a timeout, cut so that the whole script ends within GPU_CHECK_BUDGET_S (default 400 s; ~3 min expected).
#
# CPU smoke run (no wheels installed, no GPU asserted, a 2-block policy):
#   GPU_CHECK_ALLOW_CPU=1 PYTHON=.venv/bin/python GPU_CHECK_PPO_ARGS="--layers 2" bash bench/gpu_check.sh
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-/tmp/out}
PY=${PYTHON:-python3}
GC=${GPU_CHECK_DIR:-.gpucheck}
ALLOW_CPU=${GPU_CHECK_ALLOW_CPU:-0}
INSTALL=${GPU_CHECK_INSTALL:-$([ "$ALLOW_CPU" = 1 ] && echo 0 || echo 1)}
PPO_ARGS=${GPU_CHECK_PPO_ARGS:-}
ROUND_DIR=${GPU_CHECK_ROUND_DIR:-/tmp/gpucheck-round}
BUDGET=${GPU_CHECK_BUDGET_S:-400}  # seconds for the whole script: each step's timeout is cut to what is left
DEVICE=$([ "$ALLOW_CPU" = 1 ] && echo "${GPU_CHECK_EXPECT_DEVICE:-cpu}" || echo cuda)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1
T0=$(date +%s)
failed=()
step() { echo; echo "== $1 ($(( $(date +%s) - T0 )) s)"; }
cap() {  # cap MAX: a step's timeout, at most MAX and at most what is left of BUDGET (keeping 15 s for the end)
    local left=$(( BUDGET - ($(date +%s) - T0) - 15 ))
    echo $(( left < $1 ? (left < 5 ? 5 : left) : $1 ))
}
result() {  # result NAME RC
    echo "-- $1: rc=$2 ($(( $(date +%s) - T0 )) s)"
    [ "$2" = 0 ] || failed+=("$1")
}

main() {
step "wheels"
if [ "$INSTALL" = 1 ]; then
    timeout -k 10 $(cap 90) "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    rc=$?; result wheels $rc
    [ $rc = 0 ] || { echo "GPU CHECK FAILED: wheels did not install"; return 1; }
    export PYTHONPATH=/tmp/site:$PWD
else
    echo "not installed (GPU_CHECK_INSTALL=0): $PY's own packages"
    export PYTHONPATH=$PWD
fi

step "versions, GPU, imports"
(command -v nvidia-smi >/dev/null && timeout 20 nvidia-smi || echo "no nvidia-smi") 2>&1 | tee "$OUT/nvidia-smi.txt"
timeout -k 10 $(cap 90) "$PY" - "$ALLOW_CPU" <<'EOF'
import importlib, importlib.metadata as md, sys
allow_cpu = sys.argv[1] == "1"
import torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda available {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
want = {"transformers": "5.19.0", "peft": "0.21.2", "accelerate": "1.15.0", "trl": "1.16.0", "datasets": "5.2.0",
        "sqlite-utils": "4.2.1", "tokenizers": "0.23.3", "huggingface-hub": "2.4.0", "safetensors": "0.8.0"}
bad = []
for name in [*want, "pyarrow", "pandas", "numpy", "fsspec", "dill", "multiprocess", "xxhash", "click", "regex", "tqdm"]:
    try:
        version = md.version(name)
    except md.PackageNotFoundError:
        version = None
    mod = {"sqlite-utils": "sqlite_utils", "huggingface-hub": "huggingface_hub"}.get(name, name)
    try:
        where = importlib.import_module(mod).__file__
    except Exception as e:  # noqa: BLE001
        where = f"IMPORT FAILED: {type(e).__name__}: {e}"
        bad.append(name)
    flag = "" if name not in want or version == want[name] else f"  (want {want[name]})"
    bad += [name] if flag and not allow_cpu else []
    print(f"{name:16} {version!s:12} {where}{flag}")
for mod in ["align.__main__", "align.round", "align.worker", "align.sft", "align.reward", "align.ppo", "align.evaluate",
            "align.data", "loop.gate", "loop.schedule", "storage.__main__", "storage.export", "storage.importer",
            "storage.backup", "bench.ppo_gpu"]:
    try:
        importlib.import_module(mod)
    except Exception as e:  # noqa: BLE001
        print(f"FAIL  import {mod}: {type(e).__name__}: {e}")
        bad.append(mod)
from trl import SFTConfig, SFTTrainer  # noqa: F401  (lazy: only now do trl's own imports run)
if not torch.cuda.is_available() and not allow_cpu:
    bad.append("no GPU")
print("FAIL  " + ", ".join(bad) if bad else "PASS  versions, GPU and imports")
sys.exit(1 if bad else 0)
EOF
result "versions/imports" $?

step "bench.ppo_gpu under accelerate launch (SmolLM2-135M-shaped random policy) $PPO_ARGS"
timeout -k 10 $(cap 150) "$PY" -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision no \
    --dynamo_backend no -m bench.ppo_gpu --tokenizer "$GC/tiny-llama" $PPO_ARGS > "$OUT/ppo_gpu.log" 2>&1
rc=$?
grep -v -i "warn" "$OUT/ppo_gpu.log" | sed 's/^GPU CHECK /ppo_gpu: /' | tail -n 25
if [ "$ALLOW_CPU" = 1 ] && [ $rc = 1 ]; then  # on a CPU the only check allowed to fail is "the device is a GPU"
    others=$(grep -E "^(\[rank [0-9]+\] )?FAIL " "$OUT/ppo_gpu.log" | grep -v -c "the rank's device is a GPU")
    grep -q "PPO steps of" "$OUT/ppo_gpu.log" && [ "$others" = 0 ] && { echo "(CPU: only the GPU check failed)"; rc=0; }
fi
result ppo_gpu $rc

step "feedback DB for the round"
rm -rf "$ROUND_DIR" && mkdir -m 700 -p "$ROUND_DIR"
timeout -k 10 $(cap 45) "$PY" "$HERE/gpu_check_data.py" db "$ROUND_DIR" --pairs "$GC/hh-sample.jsonl.gz"
rc=$?; result db $rc

if [ $rc = 0 ]; then
    step "align run on the tiny model (SFT -> RM -> PPO -> evaluation)"
    timeout -k 10 $(cap 150) "$PY" -m align run --data-dir "$ROUND_DIR" --model "$GC/tiny-llama" \
        --sft-epochs 1 --rm-epochs 1 --ppo-total-episodes 32 --ppo-batch-size 16 --ppo-mini-batch-size 8 \
        --ppo-max-new-tokens 24 --eval-max-new-tokens 24 --rank-timeout-s 120 > "$OUT/round.log" 2>&1
    rc=$?
    grep -v -i "warn" "$OUT/round.log" | tr '\r' '\n' | grep -v "^\s*$" | tail -n $([ $rc = 0 ] && echo 12 || echo 40)
    result "align run" $rc
    step "the round in the DB and metrics.json"
    timeout -k 10 $(cap 30) "$PY" "$HERE/gpu_check_data.py" verify "$ROUND_DIR" --device "$DEVICE" \
        --copy-metrics "$OUT/round_metrics.json"
    result "round verify" $?
fi

echo
echo "total $(( $(date +%s) - T0 )) s"
if [ ${#failed[@]} = 0 ]; then
    echo "GPU CHECK PASSED$([ "$ALLOW_CPU" = 1 ] && echo ' (CPU fallback: GPU_CHECK_ALLOW_CPU=1)')"
    return 0
fi
echo "GPU CHECK FAILED: ${failed[*]}"
return 1
}

main 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
