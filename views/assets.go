package views

import (
	"embed"
	"io/fs"
)

// The vendored htmx files, our stylesheet and scripts, and the licenses; the
// npm package files beside them only record the versions (static/README.md).
//
//go:embed static/htmx.min.js static/htmx-ext-sse.js static/console.css static/console.js static/subscriber.js static/LICENSES.txt
var static embed.FS

// Static holds the console's stylesheet, scripts and the vendored htmx.
var Static, _ = fs.Sub(static, "static")
