"""execution: dry-run and live order handling with a durable ledger (exec.*)."""
