"""Benchmarks: `fusiondesk bench nlu` and `fusiondesk bench kb`."""
