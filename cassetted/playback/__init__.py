"""Playback: zones (MPD, Snapcast, local, Home Assistant) behind one interface, party mode."""
