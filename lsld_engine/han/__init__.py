"""The HAN / MMIL parser: the network, its checkpoints, training (torch and the packed CPU engine)."""
