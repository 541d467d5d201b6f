"""seqcourse: the tested helper package behind the seqcourse book on sequence modeling."""
from .device import available_devices, get_device, seed_everything

__all__ = ["available_devices", "get_device", "seed_everything"]
