"""ingest: the system's eyes: venue feeds normalised onto the bus (md.*), clock ticks, probes."""
