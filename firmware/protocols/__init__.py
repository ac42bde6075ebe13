"""Wire format shared by the device and the host (imported by both ends)."""
