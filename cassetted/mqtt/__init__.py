"""Everything that speaks MQTT: the connection, the router, commands, events, Hermes."""
