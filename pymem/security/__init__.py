"""Security: master keys, encryption at rest, personal data, audit checkpoints, sealing."""
