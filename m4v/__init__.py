"""M4V: Multi-Modal Mamba for text-to-video, and the models it is compared with."""
