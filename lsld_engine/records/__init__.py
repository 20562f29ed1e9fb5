"""Results: events and the inference rule, writers and readers, Parquet, results folders, URIs, locks."""
