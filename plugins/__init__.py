"""Built-in plugins, one sub-package per protocol. Each is off until enabled in the configuration."""
