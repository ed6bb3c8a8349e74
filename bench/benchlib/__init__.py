"""Library of the Tandem benchmark harness (``bench/run.py``); standard library only."""
