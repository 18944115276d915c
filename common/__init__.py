"""What serving/ and align/ both need and neither owns: turning config dataclasses into command-line
flags (flags.py) and finding the base model's weights (models.py). Imports nothing of ours but storage/."""
