// Package openapi reports how a policy covers an app's OpenAPI description: operations no route takes, routes no operation reaches, selectors that can never match, sensitive fields left plain.
package openapi
