// Package policy loads the YAML policy strictly, compiles it into route
// matchers and field selectors, and decides what happens to a request. It
// knows nothing of HTTP servers: the proxy and the Envoy adapter both hand it
// a method, a canonical path and an identity.
package policy
