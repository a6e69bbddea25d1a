"""One module per zone kind: MPD, Snapcast, local sound card, Home Assistant."""
