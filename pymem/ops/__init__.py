"""Operations: the command line, the worker, doctor and the demo."""
