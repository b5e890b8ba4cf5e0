"""Monodomain solver: problem set-up, diffusion, stimuli and the splitting loop."""
