// Package api holds numberd's REST contract: the OpenAPI document (openapi.yaml), the Go
// types, chi router and strict server interface generated from it (api.gen.go), and the
// strict JSON decoding of request bodies (strict.go).
//
// The handlers live elsewhere and implement StrictServerInterface; this package does no I/O.
package api

import _ "embed"

//go:generate go tool oapi-codegen -config oapi-codegen.yaml openapi.yaml

// Spec is the raw OpenAPI 3.0 document (openapi.yaml) the server was generated from, served
// unchanged at GET /openapi.yaml with Content-Type application/yaml.
//
//go:embed openapi.yaml
var Spec []byte
