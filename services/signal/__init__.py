"""signal: features and the probability that the window resolves Up (sig.*)."""
