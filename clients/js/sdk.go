// Package jssdk embeds the built JavaScript SDK (clients/js/dist), which the
// service serves at /sdk/, so a page can load it from the service itself.
// `npm run check` in this folder fails when dist/ differs from a fresh build.
package jssdk

import (
	"embed"
	"io/fs"
)

//go:embed dist/hybrid-realtime.js dist/react.js dist/*.d.ts
var dist embed.FS

// Dist holds hybrid-realtime.js (the client), react.js (the React bindings)
// and their type declarations.
var Dist, _ = fs.Sub(dist, "dist")
