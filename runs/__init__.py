"""Orchestration: a config becomes runs (the builder), and many runs become one job set (the
executor) for comparisons, sweeps and skill-graph estimates."""
