#!/usr/bin/python3
# Reference renderer for the template tests: renders chat templates with the original Jinja
# configured exactly as transformers' _compile_jinja_template does (utils/chat_template_utils.py):
# ImmutableSandboxedEnvironment(trim_blocks, lstrip_blocks, extensions=[AssistantTracker,
# loopcontrols]), tojson = json.dumps(ensure_ascii=False, indent=...), raise_exception and
# strftime_now globals. The clock is pinned by the job file so both sides see the same date.
#
# usage: render_reference.py JOBS.json OUT.json
#   JOBS.json: {"now": <unix seconds>, "jobs": [{"template": <path>, "context": {...}}, ...]}
#   OUT.json:  [{"ok": true, "output": str} | {"ok": false, "raised": bool, "error": str}, ...]
import json
import sys
from datetime import datetime

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


def make_environment(now):
    class AssistantTracker(jinja2.ext.Extension):
        # transformers' {% generation %} block; without an active tracker it renders its body.
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

        @jinja2.pass_eval_context
        def _generation_support(self, context, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.fromtimestamp(now).strftime(format)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    env = make_environment(spec["now"])
    compiled = {}
    results = []
    for job in spec["jobs"]:
        try:
            key = job.get("template") or "inline:" + job["source"]
            if key not in compiled:
                if "source" in job:
                    source = job["source"]
                else:
                    with open(key, encoding="utf-8") as f:
                        source = f.read()
                compiled[key] = env.from_string(source)
            results.append({"ok": True, "output": compiled[key].render(**job["context"])})
        except Exception as e:  # every failure is data for the comparison
            raised = type(e) is jinja2.exceptions.TemplateError
            results.append({"ok": False, "raised": raised, "error": f"{type(e).__name__}: {e}",
                            "message": str(e)})
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(results, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
