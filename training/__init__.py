"""Builds and evaluates the bundled model weights on the synthetic phantom (PKCP-MixUp, CIs, ablations); the viewer never imports it."""
