"""Checks docs/asyncapi.yaml for tests/api (flows::asyncapi::asyncapi_describes_every_frame_of_a_real_session).

  check.py ASYNCAPI_YAML FRAMES_JSON

1. The document validates against the official AsyncAPI 3.0.0 JSON Schema
   (@asyncapi/specs, installed by `npm ci --prefix tests/asyncapi`).
2. Every message's examples validate against that message's payload schema.
3. Every frame the server sent in a real session (FRAMES_JSON, a list) validates against
   exactly one of the messages the server sends (`action: send`), which for a
   notification is the one of its event; the schemas forbid undeclared fields.
Prints `seen <message>` for each server message some frame matched, then `ok`; on a
failure prints what failed and exits 1.
"""
import json
import os
import sys

import jsonschema
import yaml

here = os.path.dirname(os.path.abspath(__file__))
doc_path, frames_path = sys.argv[1:3]
doc = yaml.safe_load(open(doc_path, encoding="utf-8"))
frames = json.load(open(frames_path, encoding="utf-8"))
failures = []

official = json.load(open(os.path.join(here, "node_modules/@asyncapi/specs/schemas/3.0.0-without-$id.json")))
for e in jsonschema.Draft7Validator(official).iter_errors(doc):
    failures.append(f"document: {list(e.absolute_path)}: {e.message[:300]}")


def lookup(ref):
    target = doc
    for part in ref[2:].split("/"):
        target = target[part]
    return target


def validator(payload):
    # $refs resolve against the whole document.
    return jsonschema.Draft7Validator({**payload, "components": doc["components"]})


messages = doc["components"]["messages"]
for name, message in messages.items():
    v = validator(message["payload"])
    for i, example in enumerate(message.get("examples", [])):
        for e in v.iter_errors(example["payload"]):
            failures.append(f"example {i} of {name}: {e.message[:300]}")

server = []
for op in doc["operations"].values():
    if op["action"] == "send":
        for ref in op["messages"]:
            m = lookup(ref["$ref"])
            if "$ref" in m:
                key = m["$ref"].rsplit("/", 1)[1]
                m = messages[key]
            else:
                key = ref["$ref"].rsplit("/", 1)[1]
            server.append((key, validator(m["payload"])))

seen = set()
for frame in frames:
    matched = [key for key, v in server if v.is_valid(frame)]
    if len(matched) != 1:
        failures.append(f"frame matches {matched or 'no message'}: {json.dumps(frame, ensure_ascii=False)[:400]}")
    seen.update(matched)

for key in sorted(seen):
    print(f"seen {key}")
if failures:
    for f in failures:
        print(f"FAIL {f}")
    sys.exit(1)
print("ok")
