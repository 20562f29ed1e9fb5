"""The parse / extract pipelines: which videos, the decode -> embed loop, records, the run plan."""
