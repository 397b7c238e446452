"""Heads the toolboxes lack (none yet: UPerHead, FCNHead come from mmseg)."""
