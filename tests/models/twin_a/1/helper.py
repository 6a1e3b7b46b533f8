"""Sibling module of twin_a's model.py; twin_b has a helper.py too."""

OFFSET = 100
