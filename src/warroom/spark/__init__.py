"""Apache Spark engine (`--engine spark`)."""
