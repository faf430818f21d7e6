"""strategy: entry gates, exits, risk halts and order intents (strat.*, risk.*)."""
