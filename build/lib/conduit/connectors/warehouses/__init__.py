"""The warehouse destinations (Snowflake, BigQuery), which load Parquet files they upload."""
