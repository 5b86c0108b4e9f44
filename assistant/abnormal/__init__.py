"""Normal/abnormal heart sound (the PhysioNet/CinC 2016 task), beside the murmur call."""
