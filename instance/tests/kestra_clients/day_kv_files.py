"""The KV store and namespace files: a user's day through `kestrapy`.

Sets keys of every type (with and without a time to live and a
description), reads them back typed, lists them (one namespace, all
namespaces paged and filtered, inherited from the parent namespace),
reads a parent's key from a flow with `kv()`, deletes one key and then
several. Uploads namespace files in nested directories, lists a
directory, reads stats and revisions, downloads, moves a file and a
directory, searches, exports the zip and checks its content, reads a file
from a flow with `read()`, and deletes a file and a directory. Both
releases make the same calls; the client's models parse every answer.
"""

import io
import zipfile

from kestrapy.models.kv_controller_api_delete_bulk_request import (
    KVControllerApiDeleteBulkRequest,
)

from day import state_of

# (key, body sent, type Kestra gives it, value read back)
TYPED = [
    ("a_string", '"hello"', "STRING", "hello"),
    ("a_text", "plain words", "STRING", "plain words"),
    ("a_number", "42", "NUMBER", 42),
    ("a_float", "4.5", "NUMBER", 4.5),
    ("a_bool", "true", "BOOLEAN", True),
    ("a_json", '{"retries": 3, "tags": ["x"]}', "JSON", {"retries": 3, "tags": ["x"]}),
    ("a_list", "[1, 2, 3]", "JSON", [1, 2, 3]),
    ("a_date", "2024-03-01", "DATE", "2024-03-01"),
    ("a_datetime", "2024-03-01T10:15:00Z", "DATETIME", "2024-03-01T10:15:00Z"),
    ("a_duration", "PT15M", "DURATION", "PT15M"),
]

READS_PARENT_KEY = """
tasks:
  - id: read
    type: io.kestra.plugin.core.debug.Return
    format: "{{ kv('shared') }} {{ kv('own') }} {{ read('scripts/lib/util.py') }}"
"""


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def kind_of(detail):
    return getattr(detail.type, "value", detail.type)


def with_headers(day, headers, fn):
    """Calls `fn` with extra request headers on the client's session (the
    client's `set_key_value` has no parameter for Kestra's `ttl` and
    `description` headers; a user sets them on the session)."""
    session = day.client._session
    saved = dict(session.headers)
    session.headers.update(headers)
    try:
        return fn()
    finally:
        session.headers.clear()
        session.headers.update(saved)


def run(day):
    kv_day(day)
    files_day(day)


def kv_day(day):
    kv, t, ns = day.client.kv, day.tenant, day.namespace
    parent = ns.rsplit(".", 1)[0]

    for key, body, kind, value in TYPED:
        day.check(f"kv.set_key_value({kind} {key})",
                  lambda: kv.set_key_value(namespace=ns, key=key, tenant=t, body=body))

        def read_back(key=key, kind=kind, value=value):
            detail = kv.key_value(namespace=ns, key=key, tenant=t)
            expect(kind_of(detail) == kind, f"{key}: type {detail.type}, not {kind}")
            expect(detail.value == value, f"{key}: value {detail.value!r}, not {value!r}")
            expect(detail.updated is not None, f"{key}: no update date")
        day.check(f"kv.key_value({kind} {key})", read_back)

    day.check("kv.set_key_value(ttl and description headers)", lambda: with_headers(
        day, {"ttl": "PT1H", "description": "expires soon"},
        lambda: kv.set_key_value(namespace=ns, key="short_lived", tenant=t, body="1")))
    day.check("kv.set_key_value(parent namespace)", lambda: kv.set_key_value(
        namespace=parent, key="shared", tenant=t, body='"from the parent"'))
    day.check("kv.set_key_value(child key)", lambda: kv.set_key_value(
        namespace=ns, key="own", tenant=t, body='"mine"'))
    day.check("kv.set_key_value(parent key shadowed by the child)", lambda: kv.set_key_value(
        namespace=parent, key="own", tenant=t, body='"not mine"'))

    def list_all():
        page = kv.list_all_keys(tenant=t, page=1, size=100, sort=["key:asc"],
                                filters=[{"field": "namespace", "operation": "EQUALS", "value": ns}])
        keys = [e.key for e in page.results]
        expect(page.total == len(TYPED) + 2, f"total {page.total}: {keys}")
        expect(keys == sorted(keys), f"not sorted: {keys}")
        short = next(e for e in page.results if e.key == "short_lived")
        expect(short.expiration_date is not None, "no expiration date")
        expect(short.description == "expires soon", f"description {short.description!r}")
        second = kv.list_all_keys(tenant=t, page=2, size=5,
                                  filters=[{"field": "namespace", "operation": "EQUALS", "value": ns}])
        expect([e.key for e in second.results] == keys[5:10], "page 2 is not keys 6 to 10")
    day.check("kv.list_all_keys(paged, filtered, sorted)", list_all)

    def inherited():
        entries = kv.list_keys_with_inheritance(namespace=ns, tenant=t)
        found = {e.key: e.namespace for e in entries}
        expect(found.get("shared") == parent, f"inherited: {found}")
        expect("a_number" not in found, "the namespace's own keys are not inherited")
    day.check("kv.list_keys_with_inheritance", inherited)

    flow_reads_parent_key(day)

    day.check("kv.delete_key_value", lambda: expect(
        kv.delete_key_value(namespace=ns, key="a_text", tenant=t) is True, "not deleted"))
    day.check("kv.delete_key_value(missing)", lambda: expect(
        kv.delete_key_value(namespace=ns, key="a_text", tenant=t) is False, "deleted twice"))

    def bulk():
        request = KVControllerApiDeleteBulkRequest(keys=["a_float", "a_list", "never_set"])
        answer = kv.delete_key_values(namespace=ns, tenant=t, request=request)
        expect(sorted(answer.keys) == ["a_float", "a_list"], f"deleted {answer.keys}")
    day.check("kv.delete_key_values", bulk)


def flow_reads_parent_key(day):
    """`kv()` in a flow of the child namespace finds the parent's key and
    prefers its own; `read()` reads a namespace file."""
    files, t, ns = day.client.files, day.tenant, day.namespace
    day.check("files.create_namespace_file(for a flow)", lambda: files.create_namespace_file(
        namespace=ns, path="/scripts/lib/util.py", tenant=t, file_content=b"print('util')"))
    day.check("flows.create_flow(kv and read)",
              lambda: day.create_flow("reads_kv", READS_PARENT_KEY))

    def run_flow():
        execution = day.client.executions.create_execution(
            namespace=ns, id="reads_kv", wait=False, tenant=t)
        done = day.wait_for_end(execution.id)
        expect(state_of(done) == "SUCCESS", f"state {state_of(done)}")
        run = done.task_run_list[0]
        # 2.x's TaskRun model has no `outputs` field: kept as an extra.
        outputs = getattr(run, "outputs", None) or run.additional_properties.get("outputs")
        value = outputs["value"]
        expect(value == "from the parent mine print('util')", f"output {value!r}")
    day.check("executions.create_execution(kv() inherits)", run_flow)


def files_day(day):
    files, t, ns = day.client.files, day.tenant, day.namespace
    uploads = {
        "/README.md": b"# team files\n",
        "/scripts/etl.py": b"print('etl')\n",
        "/scripts/sql/daily.sql": b"select 1;\n",
        "/data/seed.csv": b"id,name\n1,a\n",
    }
    for path, content in uploads.items():
        day.check(f"files.create_namespace_file({path})", lambda path=path, content=content:
                  files.create_namespace_file(namespace=ns, path=path, tenant=t,
                                              file_content=content))
    day.check("files.create_namespace_directory", lambda: files.create_namespace_directory(
        namespace=ns, path="/empty", tenant=t))

    def listing():
        root = files.list_namespace_directory_files(namespace=ns, tenant=t, path="/")
        names = {f.file_name: getattr(f.type, "value", f.type) for f in root}
        expect(names == {"README.md": "File", "scripts": "Directory", "data": "Directory",
                         "empty": "Directory"}, f"root: {names}")
        sub = files.list_namespace_directory_files(namespace=ns, tenant=t, path="/scripts")
        expect({f.file_name for f in sub} == {"etl.py", "sql", "lib"}, f"/scripts: {sub}")
        expect(files.list_namespace_directory_files(namespace=ns, tenant=t, path="/empty") == [],
               "/empty is not empty")
    day.check("files.list_namespace_directory_files", listing)

    def stats():
        file = files.file_metadatas(namespace=ns, tenant=t, path="/scripts/etl.py")
        expect(file.size == len(uploads["/scripts/etl.py"]), f"size {file.size}")
        expect(getattr(file.type, "value", file.type) == "File", f"type {file.type}")
        folder = files.file_metadatas(namespace=ns, tenant=t, path="/scripts")
        expect(getattr(folder.type, "value", folder.type) == "Directory", f"type {folder.type}")
    day.check("files.file_metadatas", stats)

    day.check("files.file_revisions", lambda: expect(
        [r.revision for r in files.file_revisions(namespace=ns, tenant=t,
                                                 path="/scripts/etl.py")] == [1],
        "one current revision"))
    day.check("files.file_content", lambda: expect(
        files.file_content(namespace=ns, path="/scripts/sql/daily.sql", tenant=t)
        == uploads["/scripts/sql/daily.sql"], "content differs"))

    day.check("files.move_file_directory(file)", lambda: files.move_file_directory(
        namespace=ns, from_path="/README.md", to_path="/docs/README.md", tenant=t))
    day.check("files.move_file_directory(directory)", lambda: files.move_file_directory(
        namespace=ns, from_path="/scripts/sql", to_path="/sql", tenant=t))

    def search():
        found = files.search_namespace_files(namespace=ns, q="sql", tenant=t)
        expect(found == ["/sql/daily.sql"], f"found {found}")
    day.check("files.search_namespace_files", search)

    def export():
        data = files.export_namespace_files(namespace=ns, tenant=t)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = sorted(archive.namelist())
            expect(names == ["data/seed.csv", "docs/README.md", "scripts/etl.py",
                             "scripts/lib/util.py", "sql/daily.sql"], f"zip: {names}")
            expect(archive.read("sql/daily.sql") == uploads["/scripts/sql/daily.sql"],
                   "zip content differs")
    day.check("files.export_namespace_files", export)

    day.check("files.delete_file_directory(file)", lambda: files.delete_file_directory(
        namespace=ns, path="/docs/README.md", tenant=t))
    day.check("files.delete_file_directory(directory)", lambda: files.delete_file_directory(
        namespace=ns, path="/scripts", tenant=t))

    def after():
        root = files.list_namespace_directory_files(namespace=ns, tenant=t)
        names = sorted(f.file_name for f in root)
        expect(names == ["data", "docs", "empty", "sql"], f"root after deletes: {names}")
    day.check("files.list_namespace_directory_files(after deletes)", after)
