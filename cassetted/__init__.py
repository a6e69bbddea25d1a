"""cassetted: songs on request for the rooms of a home, driven over MQTT."""

__version__ = "0.1.0"
