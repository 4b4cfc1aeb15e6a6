#!/usr/bin/env python3
"""Interop client: drives bth-gateway with stock grpcio over mutual TLS.

Run by tests/interop/run.sh, which starts the gateway, registers the participants and issues
their certificates. Usage:

    client.py --port PORT --certs DIR/certs --stubs STUB_DIR

Each step asserts its outcome and prints one PASS line; any failure raises, so the process
exits non-zero.
"""

import argparse
import hashlib
import os
import re
import sys
import uuid

import grpc

TARGET_NAME = "localhost"  # a SAN of the development server certificate
DATASET = "enterprise-survey"
FIELDS = ["name", "phone", "revenue", "employees", "founded"]
HEX64 = re.compile(r"^[0-9a-f]{64}$")

# Three rows; None is null. The columns carry only the non-null values.
ROWS = [
    {"name": "张小明", "phone": "13800138000", "revenue": "1234.50", "employees": 150, "founded": "2015-03-01"},
    {"name": "Alice", "phone": "+86-22-12345678", "revenue": "99.99", "employees": 42, "founded": "2020-11-30"},
    {"name": "李四", "phone": None, "revenue": "-7.25", "employees": None, "founded": "1999-01-15"},
]


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--certs", required=True, help="the certs/ directory written by `bth-gateway init`")
    p.add_argument("--clients", help="where client ID.pem/ID.key are (default CERTS/clients)")
    p.add_argument("--stubs", required=True, help="directory holding the generated bth/gateway/v1 modules")
    return p.parse_args()


ARGS = parse_args()
sys.path.insert(0, ARGS.stubs)

from bth.gateway.v1 import catalog_pb2, catalog_pb2_grpc  # noqa: E402
from bth.gateway.v1 import exchange_pb2, exchange_pb2_grpc  # noqa: E402
from bth.gateway.v1 import publishing_pb2, publishing_pb2_grpc  # noqa: E402
from bth.gateway.v1 import sharing_pb2, sharing_pb2_grpc  # noqa: E402
from bth.gateway.v1 import types_pb2 as t  # noqa: E402

CLIENTS = ARGS.clients or os.path.join(ARGS.certs, "clients")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def channel(participant):
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(os.path.join(ARGS.certs, "ca.pem")),
        private_key=read(os.path.join(CLIENTS, participant + ".key")),
        certificate_chain=read(os.path.join(CLIENTS, participant + ".pem")),
    )
    return grpc.secure_channel(
        f"127.0.0.1:{ARGS.port}", creds, options=[("grpc.ssl_target_name_override", TARGET_NAME)]
    )


def passed(step, detail=""):
    print(f"PASS {step}" + (f": {detail}" if detail else ""), flush=True)


def expect_error(code, fn, what):
    """Calls fn() and asserts it fails with `code`; returns the RpcError."""
    try:
        result = fn()
    except grpc.RpcError as e:
        assert e.code() == code, f"{what}: expected {code.name}, got {e.code().name}: {e.details()!r}"
        return e
    raise AssertionError(f"{what}: expected {code.name}, but the call succeeded: {result!r}")


def mask(kind, **kw):
    return t.Mask(kind=kind, **kw)


# --- (a) Catalog.RegisterDataset -------------------------------------------------------------

def register_dataset(stats):
    fields = [
        t.Field(name="name", type=t.STRING, level=t.G3, pi=t.PI_PI, share=t.CONDITIONAL,
                default_mask=mask(t.PARTIAL, keep_first=1, keep_last=0), description="respondent name"),
        t.Field(name="phone", type=t.STRING, level=t.G3, pi=t.PI_PI, share=t.CONDITIONAL, nullable=True,
                default_mask=mask(t.HASH), description="contact phone"),
        t.Field(name="revenue", type=t.DECIMAL, level=t.G2, pi=t.PI_NONE, share=t.CONDITIONAL,
                default_mask=mask(t.NONE), description="annual revenue, CNY"),
        t.Field(name="employees", type=t.INT64, level=t.G2, pi=t.PI_NONE, share=t.CONDITIONAL, nullable=True,
                default_mask=mask(t.BUCKET, bucket_width=100), description="headcount"),
        t.Field(name="founded", type=t.DATE, level=t.G2, pi=t.PI_NONE, share=t.CONDITIONAL,
                default_mask=mask(t.GENERALIZE_DATE, granularity=t.YEAR), description="founding date"),
    ]
    req = catalog_pb2.RegisterDatasetRequest(
        id=DATASET, title="Enterprise survey", description="interop test dataset",
        government_data=True, fields=fields)
    ds = catalog_pb2_grpc.CatalogStub(stats).RegisterDataset(req, timeout=10)
    assert ds.id == DATASET, ds
    assert ds.owner == "tj-stats", ds.owner
    assert ds.government_data is True
    assert [f.name for f in ds.fields] == FIELDS, [f.name for f in ds.fields]
    assert ds.latest_version == 0, ds.latest_version
    passed("a RegisterDataset", f"{ds.id} owner={ds.owner} fields={len(ds.fields)}")


# --- (b) Publishing.Publish ------------------------------------------------------------------

def build_batch():
    types = {"name": "s", "phone": "s", "revenue": "s", "employees": "i", "founded": "s"}
    columns = []
    for f in FIELDS:
        col = t.Column()
        for i, row in enumerate(ROWS):
            v = row[f]
            if v is None:
                col.nulls.append(i)
            elif types[f] == "s":
                col.strings.append(v)
            else:
                col.ints.append(v)
        columns.append(col)
    return t.RowBatch(row_count=len(ROWS), columns=columns)


def publish_requests(key):
    yield publishing_pb2.PublishRequest(header=publishing_pb2.PublishHeader(dataset_id=DATASET, idempotency_key=key))
    yield publishing_pb2.PublishRequest(batch=build_batch())


def publish(stats):
    key = "interop-" + uuid.uuid4().hex
    stub = publishing_pb2_grpc.PublishingStub(stats)
    resp = stub.Publish(publish_requests(key), timeout=10)
    assert resp.dataset_id == DATASET, resp
    assert resp.created is True, resp
    assert resp.version.version == 1, resp.version
    assert resp.version.rows == 3, resp.version
    assert HEX64.match(resp.version.sha256), resp.version.sha256
    assert resp.version.publisher == "tj-stats", resp.version.publisher
    # Retrying with the same idempotency key and content returns the same version.
    again = stub.Publish(publish_requests(key), timeout=10)
    assert again.created is False, again
    assert again.version.version == resp.version.version and again.version.sha256 == resp.version.sha256, again
    ds = catalog_pb2_grpc.CatalogStub(stats).GetDataset(catalog_pb2.GetDatasetRequest(id=DATASET), timeout=10)
    assert ds.latest_version == 1, ds.latest_version
    passed("b Publish", f"version={resp.version.version} rows={resp.version.rows} "
                        f"sha256={resp.version.sha256[:16]}... (idempotent retry: created=false)")
    return resp.version


# --- (c) Sharing.RequestGrant / DecideGrant --------------------------------------------------

def grant(commerce, stats):
    req = sharing_pb2.RequestGrantRequest(
        dataset_id=DATASET, fields=FIELDS, use=sharing_pb2.ROWS,
        purpose="Market supervision of registered enterprises in Tianjin",
        legal_basis="Statutory duty of the market regulator (PIPL Art. 34)")
    g = sharing_pb2_grpc.SharingStub(commerce).RequestGrant(req, timeout=10)
    assert g.id, g
    assert g.consumer == "tj-commerce", g.consumer
    assert g.dataset_id == DATASET, g
    assert g.status == sharing_pb2.PENDING, sharing_pb2.GrantStatus.Name(g.status)
    d = sharing_pb2_grpc.SharingStub(stats).DecideGrant(
        sharing_pb2.DecideGrantRequest(grant_id=g.id, approve=sharing_pb2.Approve()), timeout=10)
    assert d.id == g.id, d
    assert d.status == sharing_pb2.APPROVED, sharing_pb2.GrantStatus.Name(d.status)
    assert [f.name for f in d.fields] == FIELDS, [f.name for f in d.fields]
    passed("c RequestGrant+DecideGrant", f"grant={d.id} status=APPROVED fields={len(d.fields)}")
    return d


# --- (d) Exchange.Pull -----------------------------------------------------------------------

def text_values(col, row_count):
    """The column's values in row order, None for nulls (text columns only)."""
    nulls = set(col.nulls)
    vals = iter(col.strings)
    return [None if i in nulls else next(vals) for i in range(row_count)]


def pull(commerce):
    stub = exchange_pb2_grpc.ExchangeStub(commerce)
    req = exchange_pb2.PullRequest(dataset_id=DATASET)
    # Also keep the raw wire bytes of each message, to compare the trailer against what the
    # gateway actually sent as well as against the re-serialized messages.
    raw_pull = commerce.unary_stream(
        "/bth.gateway.v1.Exchange/Pull",
        request_serializer=exchange_pb2.PullRequest.SerializeToString,
        response_deserializer=lambda b: b)
    raw = list(raw_pull(req, timeout=10))
    msgs = list(stub.Pull(req, timeout=10))
    assert len(msgs) >= 2, f"expected a header, batches and a trailer, got {len(msgs)} messages"
    assert len(raw) == len(msgs), (len(raw), len(msgs))
    assert msgs[0].WhichOneof("msg") == "header", msgs[0]
    assert msgs[-1].WhichOneof("msg") == "trailer", msgs[-1]
    header, trailer = msgs[0].header, msgs[-1].trailer
    batches = [m.batch for m in msgs[1:-1]]
    assert all(m.WhichOneof("msg") == "batch" for m in msgs[1:-1])

    # Header: the delivered fields, in order, with their masks.
    assert header.transfer_id, header
    assert header.dataset_id == DATASET and header.version == 1, header
    got = {f.name: f for f in header.fields}
    assert [f.name for f in header.fields] == FIELDS, [f.name for f in header.fields]
    assert got["name"].mask.kind == t.PARTIAL and got["name"].mask.keep_first == 1, got["name"]
    assert got["phone"].mask.kind == t.HASH, got["phone"]
    assert got["revenue"].mask.kind in (t.NONE, t.MASK_KIND_UNSPECIFIED), got["revenue"]
    assert got["employees"].mask.kind == t.BUCKET and got["employees"].mask.bucket_width == 100, got["employees"]
    assert got["founded"].mask.kind == t.GENERALIZE_DATE and got["founded"].mask.granularity == t.YEAR, got["founded"]
    assert got["revenue"].type == t.DECIMAL, got["revenue"]
    for n in ("name", "phone", "employees", "founded"):
        assert got[n].type == t.STRING, (n, t.FieldType.Name(got[n].type))
    assert header.decision.action == "PASS", header.decision
    assert header.total_batches == len(batches), (header.total_batches, len(batches))

    # Values, decoded column by column across batches.
    cols = {n: [] for n in FIELDS}
    for b in batches:
        assert len(b.columns) == len(FIELDS), len(b.columns)
        for n, c in zip(FIELDS, b.columns):
            cols[n].extend(text_values(c, b.row_count))
    assert sum(b.row_count for b in batches) == 3

    assert cols["name"] == ["张**", "A****", "李*"], cols["name"]
    assert cols["phone"][2] is None, cols["phone"]
    for clear, hashed in zip([r["phone"] for r in ROWS[:2]], cols["phone"][:2]):
        assert HEX64.match(hashed) and hashed != clear, hashed
        # Keyed: not a plain SHA-256 of the value either.
        assert hashed != hashlib.sha256(clear.encode()).hexdigest(), hashed
    assert cols["phone"][0] != cols["phone"][1]
    assert cols["revenue"] == [r["revenue"] for r in ROWS], cols["revenue"]
    assert cols["employees"] == ["[100,200)", "[0,100)", None], cols["employees"]
    assert cols["founded"] == ["2015", "2020", "1999"], cols["founded"]

    # Trailer.
    assert trailer.rows == 3, trailer
    assert trailer.batches == len(batches), trailer
    # The trailer's sha256 is SHA-256 over the SHA-256 digests of the delivered RowBatch
    # encodings, concatenated in order.
    # A client only has the decoded messages, so it re-serializes each RowBatch
    # deterministically. This matches the gateway's bytes because both prost and protobuf-python
    # write fields in field-number order, pack repeated scalars and omit proto3 defaults, and
    # RowBatch has no maps or unknown fields; deterministic=True pins the remaining freedom.
    reser = [b.SerializeToString(deterministic=True) for b in batches]
    resha = hashlib.sha256(b"".join(hashlib.sha256(b).digest() for b in reser)).hexdigest()
    # The exact bytes on the wire: PullResponse field 2 (batch) is tag 0x12 + varint length.
    wire = [unwrap_field(r, 2) for r in raw[1:-1]]
    wiresha = hashlib.sha256(b"".join(hashlib.sha256(b).digest() for b in wire)).hexdigest()
    assert trailer.bytes == sum(map(len, wire)), (trailer.bytes, sum(map(len, wire)))
    assert wiresha == trailer.sha256, f"trailer sha256 {trailer.sha256} != sha256 of wire RowBatch bytes {wiresha}"
    assert resha == trailer.sha256, (f"trailer sha256 {trailer.sha256} != sha256 of re-serialized RowBatches "
                                     f"{resha} (wire bytes match: the gateway's encoding is not canonical)")
    passed("d Pull", f"fields={[f'{f.name}:{t.MaskKind.Name(f.mask.kind)}' for f in header.fields]} "
                     f"name={cols['name']} employees={cols['employees']} founded={cols['founded']} "
                     f"phone={cols['phone'][0][:12]}... rows={trailer.rows} sha256 ok")


def unwrap_field(buf, number):
    """The payload of length-delimited field `number` in a serialized message (must be the only field)."""
    tag, i = read_varint(buf, 0)
    assert tag == (number << 3) | 2, (tag, buf[:8])
    n, i = read_varint(buf, i)
    assert i + n == len(buf), (i, n, len(buf))
    return buf[i:]


def read_varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


# --- (e), (f) refusals -----------------------------------------------------------------------

def unregistered_pull():
    with channel("nobody") as ch:
        stub = exchange_pb2_grpc.ExchangeStub(ch)
        e = expect_error(grpc.StatusCode.UNAUTHENTICATED,
                         lambda: list(stub.Pull(exchange_pb2.PullRequest(dataset_id=DATASET), timeout=10)),
                         "Pull with an unregistered certificate")
    passed("e unregistered Pull -> UNAUTHENTICATED", e.details())


def consumer_publish(commerce):
    stub = publishing_pb2_grpc.PublishingStub(commerce)
    e = expect_error(grpc.StatusCode.PERMISSION_DENIED,
                     lambda: stub.Publish(publish_requests("interop-consumer-" + uuid.uuid4().hex), timeout=10),
                     "Publish by a consumer")
    passed("f consumer Publish -> PERMISSION_DENIED", e.details())


# --- (g) health ------------------------------------------------------------------------------

def health(ch):
    try:
        from grpc_health.v1 import health_pb2, health_pb2_grpc
    except ImportError:
        print("SKIP g health: grpcio-health-checking is not installed", flush=True)
        return
    stub = health_pb2_grpc.HealthStub(ch)
    for svc in ("", "bth.gateway.v1.Exchange", "bth.gateway.v1.Publishing"):
        r = stub.Check(health_pb2.HealthCheckRequest(service=svc), timeout=10)
        assert r.status == health_pb2.HealthCheckResponse.SERVING, (svc, r)
    passed("g health", "overall, Exchange, Publishing SERVING")


def main():
    with channel("tj-stats") as stats, channel("tj-commerce") as commerce:
        grpc.channel_ready_future(stats).result(timeout=10)
        register_dataset(stats)
        publish(stats)
        grant(commerce, stats)
        pull(commerce)
        unregistered_pull()
        consumer_publish(commerce)
        health(stats)
    print("interop: all steps passed", flush=True)


if __name__ == "__main__":
    main()
