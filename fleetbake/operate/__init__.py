"""The worker owner's operations: is it connected (status), a plain-host service, AWS housekeeping."""
