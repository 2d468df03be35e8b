// Package examples holds pages that show the SDK at work, served under
// /examples/ with no build step: the dashboard example runs the React
// bindings from /sdk/react.js on React 18.3.1's UMD builds, vendored here
// from npm (vendor/LICENSE.txt), with a room (room.js) that shows who is
// here and who is typing on a presence channel.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed dashboard.html dashboard.js room.js react-shim.js vendor
var files embed.FS

// Files are the example pages and their scripts.
var Files fs.FS = files
