// The web UI's entry point (issue 19). Served from this server only, under a strict
// Content-Security-Policy: no inline script, no eval, no third-party origin.
document.documentElement.dataset.js = "on";
