"""Builds liverview's weights: PKCP-MixUp datasets, training, evaluation with CIs, ablations, bundle export."""
