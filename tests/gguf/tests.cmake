# Tests of the gguf module (owned by that module).
