"""The public contract: MQTT payload schemas, error codes, the AsyncAPI document."""
