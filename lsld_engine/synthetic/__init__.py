"""The synthetic LLP world (a dataset root whose weak labels are noisy) and label quality against its truth."""
