// Package kubernetes is the Kubernetes sidecar example: manifests that run
// the messaging app behind phiguard, and a test that decodes each one
// strictly and checks the invariants the deployment relies on. It has no code.
package kubernetes
