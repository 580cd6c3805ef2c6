// Runs tests/template/render_reference.py (the original Jinja, configured as transformers does)
// on a batch of jobs and returns its results. Must not know the C++ interpreter under test.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/template/value.hpp"

namespace vkllm::test {

struct OracleResult {
  bool ok = false;
  std::string output;   // when ok
  bool raised = false;  // the template called raise_exception
  std::string error;    // type and message, for reports
  std::string message;  // the exception's message
};

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// jobs: a list of {"template": path} or {"source": text}, each with "context". Throws
// std::runtime_error when the oracle cannot run (no python3-jinja2 is a test failure).
inline std::vector<OracleResult> run_oracle(const tmpl::Value& jobs, std::int64_t now) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("vkllm-template-oracle-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  tmpl::Dict spec;
  spec.set(tmpl::Value::string("now"), tmpl::Value::integer(now));
  spec.set(tmpl::Value::string("jobs"), jobs);
  {
    std::ofstream out(dir / "jobs.json", std::ios::binary);
    out << tmpl::to_json(tmpl::Value::dict(std::move(spec)));
  }
  const std::string cmd = std::string("'") + VKLLM_TEMPLATE_PYTHON + "' '" + VKLLM_TEMPLATE_TEST_DIR +
                          "/render_reference.py' '" + (dir / "jobs.json").string() + "' '" +
                          (dir / "out.json").string() + "' 2> '" + (dir / "stderr.txt").string() + "'";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    const std::string err = read_file(dir / "stderr.txt");
    fs::remove_all(dir);
    throw std::runtime_error("template oracle failed (is python3-jinja2 installed for " +
                             std::string(VKLLM_TEMPLATE_PYTHON) + "?): " + err);
  }
  const tmpl::Value results = tmpl::parse_json(read_file(dir / "out.json"));
  fs::remove_all(dir);
  std::vector<OracleResult> out;
  for (const tmpl::Value& r : results.as_list()) {
    const tmpl::Dict& d = r.as_dict();
    OracleResult o;
    o.ok = d.find("ok")->as_bool();
    if (o.ok) {
      o.output = d.find("output")->as_string();
    } else {
      o.raised = d.find("raised")->as_bool();
      o.error = d.find("error")->as_string();
      o.message = d.find("message")->as_string();
    }
    out.push_back(std::move(o));
  }
  return out;
}

// Where two renders first differ, with some context, for failure messages.
inline std::string first_difference(const std::string& expected, const std::string& actual) {
  std::size_t i = 0;
  while (i < expected.size() && i < actual.size() && expected[i] == actual[i]) ++i;
  const std::size_t from = i > 40 ? i - 40 : 0;
  return "at byte " + std::to_string(i) + "\n  expected: ..." + tmpl::repr(tmpl::Value::string(expected.substr(from, 100))) +
         "\n  actual:   ..." + tmpl::repr(tmpl::Value::string(actual.substr(from, 100)));
}

}  // namespace vkllm::test
