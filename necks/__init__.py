"""DenseKit's own necks (FPN, UPerHead's PPM etc. come from mmseg/mmdet)."""
