"""Hardware access behind small interfaces; see `firmware.drivers.interfaces`."""
