"""seqcourse: the tested helper package behind the seqcourse book on sequence modeling."""
from .device import Setup, available_devices, get_device, seed_everything, setup

__all__ = ["Setup", "available_devices", "get_device", "seed_everything", "setup"]
