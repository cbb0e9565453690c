"""The diffusion world model: EDM (edm.py), samplers and guidance (samplers.py)."""
