"""TF Serving-compatible serving of the FAQ model: server, client, query and the pipeline serving check."""
