"""Commands that are not services: the `polyedge` CLI, backtest, benchmarks and the isolated
supervisord tree used by tests and benchmarks."""
