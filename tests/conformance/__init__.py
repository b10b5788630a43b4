"""Engine conformance suite: every engine of diffcore against the contract (sections 2-6)."""
