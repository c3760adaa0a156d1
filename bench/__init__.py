"""Speed measurements: `python -m bench.benchmark` (CPU, default model) and `bash bench/gpu_check.sh`."""
