// The three tokenization algorithms over one fragment of raw text (no special tokens inside).
// Internal to the tokenizer module; knows nothing of special-token parsing, BOS/EOS or GGUF.
#pragma once

#include <string_view>
#include <vector>

#include "engine/tokenizer/pretokenizer.hpp"
#include "engine/tokenizer/vocab.hpp"

namespace vkllm::tok {

// SentencePiece BPE (llama.cpp's "llama" vocabularies): `text` is already escaped (spaces as
// U+2581, dummy prefix added). Merges the adjacent pair whose joined text is the token with
// the highest score, left first on ties; symbols that never form a token fall back to
// <0xXX> byte tokens.
void encode_spm(const Vocab& vocab, std::string_view text, std::vector<TokenId>& out);

// Byte-level BPE: pre-tokenize, map bytes to GPT-2's alphabet, then merge each word by rank
// with a priority queue over adjacent pairs (O(n log n) per word).
void encode_bpe(const Vocab& vocab, const PreTokenizer& pre, std::string_view text,
                std::vector<TokenId>& out);

// WordPiece (BERT): clean, strip accents, lowercase, split on whitespace and punctuation,
// then greedy longest-match per word ([UNK] for a word that cannot be covered).
void encode_wpm(const Vocab& vocab, std::string_view text, std::vector<TokenId>& out);

}  // namespace vkllm::tok
