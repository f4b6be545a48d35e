"""Exports traces to tracevault with the OpenTelemetry Python SDK authenticated by a client
certificate alone (mTLS, no bearer token), through the gRPC and HTTP/protobuf exporters; prints the
trace ids and what the exporters reported.

usage: otel_sdk_mtls.py GRPC_ENDPOINT HTTP_URL SERVER_CA CLIENT_CERT CLIENT_KEY SERVICE
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

from recording import Recording

# The HTTP exporter's CA must not be overridden by the machine's bundle (see RECIPES.md).
os.environ.pop("REQUESTS_CA_BUNDLE", None)
os.environ.pop("CURL_CA_BUNDLE", None)

grpc_endpoint, http_url, ca, cert, key, service = sys.argv[1:7]


def run(protocol, exporter, svc):
    rec = Recording(exporter)
    tp = TracerProvider(resource=Resource.create({"service.name": svc}))
    tp.add_span_processor(SimpleSpanProcessor(rec))
    with tp.get_tracer("tracevault-mtls").start_as_current_span(f"{protocol} work") as s:
        s.set_attribute("transport", protocol)
        trace_id = format(s.get_span_context().trace_id, "032x")
    tp.shutdown()
    return {"protocol": protocol, "service": svc, "trace_id": trace_id, "exports_ok": rec.results}


def grpc_exporter():
    creds = grpc.ssl_channel_credentials(
        root_certificates=open(ca, "rb").read(),
        private_key=open(key, "rb").read(),
        certificate_chain=open(cert, "rb").read(),
    )
    return GrpcExporter(endpoint=grpc_endpoint, credentials=creds)


def http_exporter():
    return HttpExporter(endpoint=http_url, certificate_file=ca,
                        client_certificate_file=cert, client_key_file=key)


out = [
    run("grpc", grpc_exporter(), service),
    run("http", http_exporter(), service),
    # The same certificate may not write another service's spans.
    run("grpc", grpc_exporter(), service + "-spoofed"),
]
print(json.dumps({"runs": out}))
