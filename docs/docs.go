// Package docs embeds the service's API description.
package docs

import _ "embed"

// OpenAPI is the OpenAPI 3.1 description of the service's whole HTTP API.
//
//go:embed openapi.yaml
var OpenAPI []byte
