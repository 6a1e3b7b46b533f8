"""HRNet-W32 associative-embedding pose pipeline: network, export, preprocessing, grouping."""
