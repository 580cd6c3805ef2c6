# Tests of the tokenizer module (owned by that module).
