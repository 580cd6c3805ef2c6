# Sources of the gguf module (owned by that module).
