"""Shared by the SDK test scripts: an exporter wrapper that records every export() result (the
SDK itself swallows them), so a script can report what was acknowledged."""
from opentelemetry.sdk.trace.export import SpanExportResult


class Recording:
    def __init__(self, inner):
        self.inner = inner
        self.results = []

    def export(self, spans):
        r = self.inner.export(spans)
        self.results.append(r == SpanExportResult.SUCCESS)
        return r

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True
