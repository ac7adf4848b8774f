# A namespace file of `company.team` (uploaded before the flow runs).
import json
import os

print("token is", os.environ["API_TOKEN"])
outputs = {"kv": os.environ["KV_VALUE"], "token_length": len(os.environ["API_TOKEN"])}
print("::" + json.dumps({"outputs": outputs}) + "::")
