"""Music engines: the registry, the interface (base), and one package per engine."""
