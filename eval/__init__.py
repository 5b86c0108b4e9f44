"""Batch evaluation of predictors against CirCor labels and published baselines."""
