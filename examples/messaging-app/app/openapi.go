package app

import (
	_ "embed"
	"net/http"
)

// openapiSpec is the app's API description (OpenAPI 3.1), served at GET
// /openapi.yaml. `phiguard check -openapi` reads the file to tell which
// operations and fields a policy covers.
//
//go:embed openapi.yaml
var openapiSpec []byte

// serveOpenAPI answers the API description, as YAML.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(openapiSpec)
}
