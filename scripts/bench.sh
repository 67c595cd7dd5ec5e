#!/usr/bin/env bash
# Runs the benchmark suite on this machine and writes out/bench/BENCHMARKS.md (figures, not pass/fail).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-66}
# the benchmarks import the checkout, not the copy installed in .venv (current only after scripts/setup.sh)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
out=out/bench
mkdir -p "$out"
report="$out/BENCHMARKS.md"
{
  echo "# Benchmarks ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/{print $2}') GiB;"\
       "$(.venv/bin/python -c 'import torch; print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "no GPU")')"\
       "(load average $(cut -d' ' -f1-3 /proc/loadavg) at start; other jobs slow every figure down)"
} > "$report"
for bench in bench_pipeline bench_acr bench_hand_model bench_fit bench_penetration bench_refine bench_synth bench_input_qos bench_dds_transport \
    bench_e2e bench_overlap bench_memory bench_scaling bench_accuracy bench_render; do
  echo "[bench] $bench"
  { echo; echo "## $bench"; echo; } >> "$report"
  # the scripts print Markdown (tables + notes): kept unfenced so the tables render
  .venv/bin/python "benchmarks/$bench.py" 2>&1 | grep -v "stand-in hand\|UNTRAINED" | tee -a "$report"
  if [ "$bench" = bench_input_qos ] || [ "$bench" = bench_e2e ]; then   # again with the shipped Fast DDS profile
    echo | tee -a "$report"
    .venv/bin/python "benchmarks/$bench.py" --fastdds-profile config/fastdds_large_frames.xml 2>&1 \
      | grep -v "stand-in hand\|UNTRAINED" | tee -a "$report"
  fi
done
# The real-image benchmark: the shipped model beside MediaPipe Hands (the teacher, in its own environment) on the
# annotated photos of ../shared/realimgs, the fixed validation split of ../shared/realimgs-train (labelled by the
# teacher first; resumable, ~7 min for all 5,844 photos), held-out pasted pairs and synthetic interacting scenes.
echo "[bench] bench_real"
{ echo; echo "## bench_real"; echo; } >> "$report"
bash scripts/setup_teacher.sh | tail -1
.venv/bin/python -m hand_recon_train.teacher label | tail -12 | tee -a "$report"
echo | tee -a "$report"
.venv/bin/python benchmarks/bench_real.py --fit --out "$out/real" 2>&1 | grep -v "stand-in hand\|UNTRAINED" | tee -a "$report"
echo "[bench] wrote $report"
