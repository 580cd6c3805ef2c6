// JSON Schema to GBNF (docs/ARCHITECTURE.md "Constrained decoding"): the grammar of the JSON
// texts that the schema accepts, or a subset of them where the whole set has no tidy grammar
// (no extra properties unless the object is a map, a bounded whitespace, bounded digits), so that
// everything generated validates. A keyword it does not handle is a GrammarError naming it,
// never silently ignored.
#pragma once

#include <string>

#include <boost/json/value.hpp>

#include "engine/grammar/grammar.hpp"

namespace vkllm::grammar {

// Any JSON object (response_format json_object), as GBNF with root rule `root`.
std::string json_object_gbnf();

// The GBNF (root rule `root`) of `schema`. Handles: type (one or a list), properties, required,
// additionalProperties (false, true or a schema: extra members only for objects without
// properties), items, prefixItems, minItems, maxItems, enum, const, anyOf, oneOf, $ref to
// #/$defs/... or #/definitions/..., minLength, maxLength, pattern (a regular expression of
// literals, classes, escapes \d \w \s, ., groups, | and quantifiers, anchored), the formats date,
// time, date-time and uuid, integer minimum 0 or 1 or a range of at most 1000 values,
// min/maxProperties and propertyNames (a string schema) on maps, and annotations (title,
// description, default, examples, $schema, $id, $comment). Throws GrammarError.
std::string json_schema_gbnf(const boost::json::value& schema);

}  // namespace vkllm::grammar
