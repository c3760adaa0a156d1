"""The head atlas: per-head statistics, pattern types, ablation sweeps, importance and background jobs."""
