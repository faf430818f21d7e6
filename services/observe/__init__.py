"""observe: REST + WebSocket API, dashboard, recorder, JSONL logs and latency metrics."""
