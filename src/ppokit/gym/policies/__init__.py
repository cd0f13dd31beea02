"""Policies: the actor-critic protocol the rollout and the engines use, the numpy MLP (ppokit's fast path), torch
networks built from parts (a features extractor, an optional LSTM, policy and value heads), distributions and
normalization."""
