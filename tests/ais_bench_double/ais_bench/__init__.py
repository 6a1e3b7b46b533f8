"""TEST DOUBLE of Ascend's ais_bench (see tests/ais_bench_double/README.md): no NPU here."""
