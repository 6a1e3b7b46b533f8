"""Sibling module of twin_b's model.py; twin_a has a helper.py too."""

OFFSET = 200
