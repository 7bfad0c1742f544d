"""Context building blocks: token counting, ranking, digests and embeddings."""
