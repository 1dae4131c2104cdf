"""Model families: `configs/<family>.py:<size>`; configs/base.py holds every field."""
