"""Jobs: records users can follow, and the producers that fill them with batches."""
