"""Linux kernel interfaces: namespaces, mounts, devices, capabilities, consoles."""
