"""The household: who asks (members, guests), what they may do (rooms, quotas), what the
library and the rooms learn from them, and the modes (party, sleep, child-safe, karaoke)."""
