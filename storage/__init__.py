"""DuckDB storage: schema and migrations, image and score writes, ranking queries. No Gradio, no torch."""
