"""Household features built on playback and jobs: party, karaoke, room modes."""
