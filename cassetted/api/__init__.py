"""The MQTT command handlers: what each command topic does."""
