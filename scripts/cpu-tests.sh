# The ctest names of the tests that need no Vulkan device (GGUF reader, tokenizers, templates,
# scheduler, block pool, front end, model config, grammars, the server's parsing and life cycle,
# the model pool); each is built from test_<name>. Sourced by scripts/test.sh (the ASan build)
# and scripts/cross-arm64.sh (under qemu).
cpu_tests="common gguf tokenizer template scheduler block_pool frontend model_config server model_pool grammar"
