"""Signals every stack emits the same way: metrics, /stats/ memory, probes state, logs."""
