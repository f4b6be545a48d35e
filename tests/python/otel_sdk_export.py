"""Exports traces to tracevault with the official OpenTelemetry Python SDK (gRPC and HTTP/protobuf
exporters) over TLS with a bearer token, and prints what it sent and what the exporters reported.

usage: otel_sdk_export.py GRPC_ENDPOINT HTTP_URL CA_FILE TOKEN
"""
import json
import os
import sys

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode, SpanKind

from recording import Recording

# The HTTP exporter's CA must not be overridden by the machine's bundle (see RECIPES.md).
os.environ.pop("REQUESTS_CA_BUNDLE", None)
os.environ.pop("CURL_CA_BUNDLE", None)

grpc_endpoint, http_url, ca, token = sys.argv[1:5]


def run(protocol, exporter):
    rec = Recording(exporter)
    tp = TracerProvider(resource=Resource.create({"service.name": f"py-{protocol}", "deployment.environment.name": "test"}))
    tp.add_span_processor(SimpleSpanProcessor(rec))
    tracer = tp.get_tracer("tracevault-e2e", "1.0")
    with tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.request.method", "GET")
        root.set_attribute("http.response.status_code", 200)
        root.set_attribute("ratio", 0.5)
        root.set_attribute("cache.hit", True)
        root.set_attribute("items", ["a", "b", "c"])
        root.set_attribute("counts", [1, 2, 3])
        root.add_event("validated", {"rule": "r1", "ok": True})
        with tracer.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT) as child:
            child.set_attribute("db.system", "postgresql")
            child.set_attribute("db.query.text", "SELECT id FROM orders WHERE id = ?")
            child.set_status(Status(StatusCode.ERROR, "timeout"))
        trace_id = format(root.get_span_context().trace_id, "032x")
    tp.shutdown()
    return {
        "protocol": protocol,
        "trace_id": trace_id,
        "exports_ok": rec.results,
    }


creds = grpc.ssl_channel_credentials(root_certificates=open(ca, "rb").read())
out = [
    run("grpc", GrpcExporter(endpoint=grpc_endpoint, credentials=creds,
                             headers=(("authorization", f"Bearer {token}"),))),
    run("http", HttpExporter(endpoint=http_url, certificate_file=ca,
                             headers={"Authorization": f"Bearer {token}"})),
]
# A wrong token must be refused (and the SDK must report the failure, not retry forever).
bad = Recording(GrpcExporter(endpoint=grpc_endpoint, credentials=creds,
                             headers=(("authorization", "Bearer tvk_0000000000000000_" + "0" * 64),)))
tp = TracerProvider(resource=Resource.create({"service.name": "py-bad"}))
tp.add_span_processor(SimpleSpanProcessor(bad))
with tp.get_tracer("x").start_as_current_span("refused"):
    pass
tp.shutdown()
print(json.dumps({"runs": out, "bad_token_exports_ok": bad.results}))
