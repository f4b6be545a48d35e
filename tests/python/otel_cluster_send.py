"""Sends traces to two tracevault ingest nodes with the official OpenTelemetry Python SDK (gRPC
exporter, TLS, bearer token): some traces to each node, and traces whose spans go to both (the
frontend's spans to node A, the backend's to node B, one trace context), as services behind a
load balancer would, and one SQL injection to node B. Prints the trace ids and what the
exporters reported, as JSON.

usage: otel_cluster_send.py GRPC_A CA_A TOKEN_A GRPC_B CA_B TOKEN_B TRACES_PER_NODE
"""
import json
import sys

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from recording import Recording

grpc_a, ca_a, token_a, grpc_b, ca_b, token_b, per_node = sys.argv[1:8]
per_node = int(per_node)


def provider(service, endpoint, ca, token):
    creds = grpc.ssl_channel_credentials(root_certificates=open(ca, "rb").read())
    rec = Recording(OTLPSpanExporter(endpoint=endpoint, credentials=creds,
                                     headers=(("authorization", f"Bearer {token}"),)))
    tp = TracerProvider(resource=Resource.create({"service.name": service}))
    tp.add_span_processor(SimpleSpanProcessor(rec))
    return tp, rec


front, front_rec = provider("frontend", grpc_a, ca_a, token_a)
back, back_rec = provider("backend", grpc_b, ca_b, token_b)
ft = front.get_tracer("cluster-e2e", "1.0")
bt = back.get_tracer("cluster-e2e", "1.0")

out = {"split": [], "a": [], "b": []}
# Split traces: the server span on node A, its database child on node B.
for i in range(3):
    with ft.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.request.method", "GET")
        root.set_attribute("http.response.status_code", 200)
        with bt.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT) as child:
            child.set_attribute("db.system", "postgresql")
            child.set_attribute("db.query.text", "SELECT id FROM orders WHERE id = ?")
        out["split"].append(format(root.get_span_context().trace_id, "032x"))
# Whole traces on one node each.
for name, tracer, key in (("GET /a", ft, "a"), ("GET /b", bt, "b")):
    for i in range(per_node):
        with tracer.start_as_current_span(name, kind=SpanKind.SERVER) as root:
            root.set_attribute("order.id", i)
            with tracer.start_as_current_span("render"):
                pass
            out[key].append(format(root.get_span_context().trace_id, "032x"))
# An attack on node B (a SQL injection in the query string): its finding is committed there.
with bt.start_as_current_span("GET /orders", kind=SpanKind.SERVER) as span:
    span.set_attribute("http.request.method", "GET")
    span.set_attribute("url.path", "/orders")
    span.set_attribute("url.query", "id=1' OR '1'='1")
    span.set_attribute("http.response.status_code", 200)
    out["attack"] = format(span.get_span_context().trace_id, "032x")
front.shutdown()
back.shutdown()
out["exports_ok_a"] = all(front_rec.results)
out["exports_ok_b"] = all(back_rec.results)
out["exports_a"] = len(front_rec.results)
out["exports_b"] = len(back_rec.results)
print(json.dumps(out))
