"""The embeddable web chat widget: its assets, demo page and history endpoint (`routes`)."""
