"""The LLP dataset: its contract and annotation readers, the feature-root layout and fast feature loading."""
