// Package proxy is phiguard's HTTP pipeline: it normalizes each request,
// asks the policy for a decision, encrypts request fields, forwards through
// httputil.ReverseProxy, decrypts or masks response fields and writes the
// audit record before the client sees a byte.
package proxy
