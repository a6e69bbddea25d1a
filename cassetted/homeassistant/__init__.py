"""Home Assistant integration: MQTT discovery, the entity panel, and the REST client.

Nothing here is imported by `cassetted.config` except `settings` (pure pydantic), so the
configuration can mount these models without an import cycle.
"""
