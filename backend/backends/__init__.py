"""Backends: each turns a model directory + config into a loaded `Model`."""
