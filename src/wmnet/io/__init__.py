"""Readers and writers: SONATA spikes and reports, run.json."""
