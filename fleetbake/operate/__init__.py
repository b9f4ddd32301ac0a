"""The worker owner's operations: is it connected (status), a plain-host service, AWS housekeeping, and the
fleet's new-worker request (request, with speed_reference for its timeout_factor)."""
